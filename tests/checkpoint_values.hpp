#pragma once
// Every state-dict tensor of a checkpoint as float32 values, by name: what tests compare outputs
// with (fixtures written by torch, files written by bitfsck).
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "bitfsck/io/checkpoint.hpp"

namespace bitfsck::test {

struct TensorValues {
    std::vector<std::int64_t> shape;
    std::vector<float> values;
};

inline std::map<std::string, TensorValues> checkpoint_values(const std::filesystem::path& p) {
    io::Checkpoint ck = io::Checkpoint::open(p);
    std::map<std::string, TensorValues> out;
    for (const auto* t : ck.state_dict_tensors()) {
        TensorValues v;
        v.shape = t->shape;
        v.values.resize(static_cast<std::size_t>(t->numel()));
        if (t->numel()) ck.data(*t).read(0, t->numel(), v.values.data());
        out.emplace(t->name, std::move(v));
    }
    return out;
}

}  // namespace bitfsck::test
