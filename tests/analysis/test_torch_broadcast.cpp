// A checkpoint of a few kilobytes whose tensor is a stride-0 view of 10^12 elements (what
// torch.save writes for tensor.expand()): scan, diff and convert leave it out, promptly, saying
// why, instead of walking every element.
#include <catch2/catch.hpp>

#include <chrono>

#include "bitfsck/analysis/diff.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/io/convert.hpp"
#include "support.hpp"

using namespace bitfsck;

TEST_CASE("a broadcast view of a tiny storage is not walked element by element", "[torch]") {
    test::TempDir tmp;
    const auto path = tmp / "expanded.pt";
    test::write_bytes(tmp / "make.py",
                      "import sys, torch\n"
                      "torch.save({'layers.0.mlp.up_proj.weight': torch.ones(1, 4).expand(250000000000, 4),\n"
                      "            'layers.0.mlp.down_proj.weight': torch.randn(8, 8)}, sys.argv[1])\n");
    auto r = test::run_command(test::python() + " " + test::quote(tmp / "make.py") + " " + test::quote(path));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const io::Checkpoint c = io::Checkpoint::open(path);
    const io::TensorEntry* big = c.find_tensor("layers.0.mlp.up_proj.weight");
    REQUIRE(big);
    CHECK(big->numel() == 1'000'000'000'000);
    CHECK(big->is_broadcast_view());
    CHECK_FALSE(c.find_tensor("layers.0.mlp.down_proj.weight")->is_broadcast_view());

    const auto t0 = std::chrono::steady_clock::now();
    const analysis::ScanReport report = analysis::scan_checkpoint(c);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
    REQUIRE(report.undecoded.size() == 1);
    CHECK(report.undecoded[0].find("layers.0.mlp.up_proj.weight: a view of 1000000000000 elements") != std::string::npos);
    CHECK(report.tensors.size() == 1);

    const analysis::CheckpointDiff d = analysis::diff_checkpoints(c, c);
    CHECK(d.totals.tensors_compared == 1);
    io::ConvertOptions o;
    o.target = io::ConvertTarget::Safetensors;
    CHECK_THROWS_AS(io::convert_checkpoint(c, tmp / "out.safetensors", o), io::FormatError);
}
