// The bar, on the sample collapsed run: `bitfsck resurrect` with no recipe finishes, ends
// with no collapsed layer, and the validation loss of resurrected.pt — as PyTorch computes it with
// the fixture's own forward (bitnet_reference.window_loss) — is below every collapsed checkpoint's.
#include <catch2/catch.hpp>

#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/io/checkpoint.hpp"
#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

TEST_CASE("resurrect with no recipe cures the sample run, by PyTorch's own measure", "[resurrect][slow]") {
    test::TempDir tmp;
    const fs::path run = test::samples_dir() / "run";
    const fs::path out = tmp / "cured";
    const auto r = test::run_command(test::quote(test::cli_path()) + " resurrect " + test::quote(run) + " --tokens " +
                                     test::quote(run / "train.bin") + " --val-tokens " + test::quote(run / "val.bin") + " -o " + test::quote(out));
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    const auto log = test::read_json(out / "resurrection.json");
    REQUIRE(log["complete"] == true);
    for (const auto& s : log["stages"]) CHECK(s["accepted"] == true);

    // No collapsed layer, by a fresh scan.
    const analysis::ScanReport scan = analysis::scan_checkpoint(io::Checkpoint::open(out / "resurrected.pt"));
    for (const auto& l : scan.layers) CHECK(l.verdict != analysis::Verdict::Collapsed);

    // The run's collapsed checkpoints, by the fixture's numbers (computed by torch in make_run.py).
    const auto expected = test::read_json(run / "run.expected.json");
    double best_collapsed = 1e9;
    for (const auto& c : expected["checkpoints"])
        if (c["collapsed"].get<bool>()) best_collapsed = std::min(best_collapsed, c["val_loss"].get<double>());
    REQUIRE(best_collapsed < 1e9);

    // PyTorch's number for the output.
    const fs::path script = test::source_dir() / "tests" / "scripts" / "val_loss.py";
    const auto py = test::run_command(test::python() + " " + test::quote(script) + " " + test::quote(out / "resurrected.pt") + " " +
                                      test::quote(run / "val.bin"));
    INFO(py.err);
    REQUIRE(py.exit_code == 0);
    const double torch_loss = std::stod(py.out);
    CHECK(torch_loss < best_collapsed);
    // bitfsck's own measurement of the same file agrees with torch's.
    double final_loss = log["start"]["val_loss"].get<double>();
    for (const auto& s : log["stages"])
        if (s["accepted"].get<bool>()) final_loss = s["after"]["val_loss"].get<double>();
    CHECK(final_loss == Approx(torch_loss).epsilon(1e-4));
    // The baselines are reported whatever they show, and each has a claim.
    CHECK(log["baselines"].size() == 1 + expected["checkpoints"].size());
    CHECK(log["claims"].size() == log["baselines"].size());
    CHECK(fs::exists(out / "report.html"));
}
