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
    const auto log = test::read_json(out / "resurrection.json");
    // On this run the cure beats its best baseline by a paired interval above 0 (exit 0; 7 would
    // mean healthy but not better, with that baseline named to use instead).
    CHECK(log["beats_best_baseline"] == true);
    REQUIRE(r.exit_code == 0);
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
    // The baselines are reported whatever they show, and each has a claim: three fine-tunes of the
    // recipe's budget (the run's settings, the same without its decay, the recipe's fine-tune from
    // the last healthy checkpoint) and the run's checkpoints.
    REQUIRE(log["baselines"].size() == 3 + expected["checkpoints"].size());
    CHECK(log["baselines"][1]["name"] == "without the run's decay");
    CHECK(log["claims"].size() == log["baselines"].size());
    REQUIRE(log["comparisons"].size() == log["baselines"].size());
    // Every measurement's window losses average to its validation loss (equal windows), and each
    // comparison's mean difference is the mean of the paired per-window differences.
    auto mean = [](const nlohmann::json& v) {
        double s = 0;
        for (const auto& x : v) s += x.get<double>();
        return s / double(v.size());
    };
    nlohmann::json result_windows = log["start"]["window_losses"];
    for (const auto& s : log["stages"])
        if (s["accepted"].get<bool>()) result_windows = s["after"]["window_losses"];
    CHECK(mean(result_windows) == Approx(final_loss).epsilon(1e-9));
    double best = 1e9;
    for (std::size_t i = 0; i < log["baselines"].size(); ++i) {
        const auto& b = log["baselines"][i]["measurement"];
        const auto& c = log["comparisons"][i];
        INFO(c.dump());
        REQUIRE(b["window_losses"].size() == result_windows.size());
        CHECK(mean(b["window_losses"]) == Approx(b["val_loss"].get<double>()).epsilon(1e-9));
        double d = 0;
        for (std::size_t w = 0; w < result_windows.size(); ++w) d += b["window_losses"][w].get<double>() - result_windows[w].get<double>();
        d /= double(result_windows.size());
        CHECK(c["interval"]["mean_difference"].get<double>() == Approx(d).margin(1e-12));
        CHECK(c["interval"]["windows"] == result_windows.size());
        const double lo = c["interval"]["low"], hi = c["interval"]["high"];
        CHECK(lo <= d);
        CHECK(d <= hi);
        CHECK(c["outcome"] == (lo > 0 ? "beats" : hi < 0 ? "worse" : "no significant difference"));
        best = std::min(best, b["val_loss"].get<double>());
    }
    CHECK(log["best_baseline"]["baseline_loss"].get<double>() == best);
    CHECK(log["beats_best_baseline"] == (log["best_baseline"]["outcome"] == "beats"));
    CHECK(fs::exists(out / "report.html"));
}
