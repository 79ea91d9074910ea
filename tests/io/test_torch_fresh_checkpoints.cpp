// Checkpoints written just now by the installed PyTorch, with random layouts, read back with
// exactly torch's values. Registered only where /usr/bin/python3 has torch (test_torch_*).
#include <catch2/catch.hpp>

#include <cmath>

#include "bitfsck/io/checkpoint.hpp"
#include "support.hpp"

using namespace bitfsck;
using json = nlohmann::ordered_json;

namespace {

double expected_value(const json& v) {
    if (v.is_string()) {
        auto s = v.get<std::string>();
        return s == "nan" ? std::nan("") : (s == "inf" ? INFINITY : -INFINITY);
    }
    return v.get<double>();
}

}  // namespace

TEST_CASE("random checkpoints written by torch read back exactly", "[torch]") {
    test::TempDir tmp;
    const int count = 40;
    auto seed = GENERATE(1, 2);
    auto r = test::run_command(test::python() + " " + test::quote(test::source_dir() / "tests/scripts/torch_fresh_checkpoints.py") + " " +
                               test::quote(tmp.path()) + " " + std::to_string(seed) + " " + std::to_string(count));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    int legacy_seen = 0;
    for (int i = 0; i < count; ++i) {
        auto path = tmp / ("ckpt_" + std::to_string(i) + ".pt");
        json want = test::read_ordered_json(tmp / ("ckpt_" + std::to_string(i) + ".json"));
        INFO(path.string() << " " << want["legacy"] << " protocol " << want["protocol"]);
        io::Checkpoint c = io::Checkpoint::open(path);
        legacy_seen += want["legacy"].get<bool>();
        CHECK(c.format() == (want["legacy"].get<bool>() ? io::Format::TorchLegacy : io::Format::TorchZip));
        CHECK(c.findings().empty());
        REQUIRE(c.state_dict_path() == want["state_dict_path"].get<std::string>());
        if (!want["step"].is_null()) CHECK(c.step() == want["step"].get<std::int64_t>());
        auto sd = c.state_dict_tensors();
        REQUIRE(sd.size() == want["tensors"].size());
        for (std::size_t k = 0; k < sd.size(); ++k) {
            const auto& w = want["tensors"][k];
            const io::TensorEntry& t = *sd[k];
            INFO(t.name);
            CHECK(t.name == w["name"].get<std::string>());
            CHECK(std::string(io::dtype_name(t.dtype)) == w["dtype"].get<std::string>());
            CHECK(t.shape == w["shape"].get<std::vector<std::int64_t>>());
            CHECK(t.stride == w["stride"].get<std::vector<std::int64_t>>());
            CHECK(t.storage_offset == w["storage_offset"].get<std::int64_t>());
            std::vector<double> got(static_cast<std::size_t>(t.numel()));
            c.data(t).read(0, t.numel(), got.data());
            REQUIRE(got.size() == w["values"].size());
            std::size_t mismatches = 0;
            for (std::size_t e = 0; e < got.size(); ++e) {
                double x = expected_value(w["values"][e]);
                if (!(got[e] == x || (std::isnan(x) && std::isnan(got[e])))) ++mismatches;
            }
            CHECK(mismatches == 0);
        }
    }
    CHECK(legacy_seen > 0);
}
