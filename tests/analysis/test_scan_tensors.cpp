// scan_tensors judges tensors held in memory by the rules a file is judged by: handed the very
// bytes of a checkpoint's state dict, it must give the file's statistics, layers and verdict.
#include <catch2/catch.hpp>

#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/scan_tensors.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::analysis;
namespace fs = std::filesystem;

namespace {

// The state dict's plain, contiguous tensors as in-memory TensorData over the mapped bytes.
std::vector<NamedTensor> in_memory(const io::Checkpoint& c) {
    std::vector<NamedTensor> out;
    for (const io::TensorEntry* e : c.state_dict_tensors()) {
        REQUIRE(e->encoding == io::TensorEncoding::Plain);
        REQUIRE(e->is_contiguous());
        const std::size_t elem = io::dtype_size(e->dtype);
        const std::byte* p = c.file_of(*e).data() + e->storage_file_offset + e->storage_offset * elem;
        out.push_back({e->name, io::TensorData(std::span<const std::byte>(p, e->nbytes()), e->dtype, e->shape)});
    }
    return out;
}

}  // namespace

TEST_CASE("scan_tensors of a state dict's bytes judges as the file scan does", "[scan_tensors]") {
    // A healthy one, and the sample run's last checkpoint, whose MLPs collapsed.
    for (const fs::path file : {test::samples_dir() / "plain_state_dict.pt", test::samples_dir() / "run" / "step_000350.pt"}) {
        INFO(file.string());
        const io::Checkpoint c = io::Checkpoint::open(file);
        const ScanReport from_file = scan_checkpoint(c);
        const std::vector<NamedTensor> tensors = in_memory(c);
        const ScanReport from_memory = scan_tensors(tensors, {}, {"live", 350});
        const auto a = to_json(from_file), b = to_json(from_memory);
        for (const char* key : {"tensors", "layers", "findings", "verdict", "name_layout", "unassigned"}) {
            INFO(key);
            CHECK(a[key] == b[key]);
        }
        CHECK(b["format"] == "memory");
        CHECK(b["file"] == "live");
        CHECK(b["step"] == 350);
        CHECK_FALSE(from_memory.tensors.empty());
    }
    // The collapsed one must be found collapsed, or the comparison above proves little.
    const io::Checkpoint last = io::Checkpoint::open(test::samples_dir() / "run" / "step_000350.pt");
    CHECK(scan_tensors(in_memory(last)).verdict == Verdict::Collapsed);
}

TEST_CASE("scan_tensors leaves out integer tensors and follows the selection", "[scan_tensors]") {
    const std::vector<float> w(64 * 64, 0.02f);
    const std::vector<std::int64_t> ids(16, 3);
    auto bytes = [](const auto& v) { return std::as_bytes(std::span(v)); };
    std::vector<NamedTensor> tensors;
    tensors.push_back({"layers.0.mlp.up_proj.weight", io::TensorData(bytes(w), io::DType::F32, {64, 64})});
    tensors.push_back({"layers.0.self_attn.q_proj.weight", io::TensorData(bytes(w), io::DType::F32, {64, 64})});
    tensors.push_back({"position_ids", io::TensorData(bytes(ids), io::DType::I64, {16})});
    CHECK(scan_tensors(tensors).tensors.size() == 2);
    ScanOptions only_mlp;
    only_mlp.selection.roles = {"mlp"};
    const ScanReport r = scan_tensors(tensors, only_mlp);
    REQUIRE(r.tensors.size() == 1);
    CHECK(r.tensors[0].name == "layers.0.mlp.up_proj.weight");
}

TEST_CASE("scan_tensors stops when its progress callback says so", "[scan_tensors]") {
    const std::vector<float> w(64 * 64, 0.02f);
    std::vector<NamedTensor> tensors;
    for (int i = 0; i < 4; ++i)
        tensors.push_back({"layers." + std::to_string(i) + ".mlp.up_proj.weight",
                           io::TensorData(std::as_bytes(std::span(w)), io::DType::F32, {64, 64})});
    ScanOptions o;
    o.threads = 1;
    o.progress = [](const Progress&) { return false; };
    CHECK_THROWS_AS(scan_tensors(tensors, o), Cancelled);
}
