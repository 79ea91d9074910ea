// The bar, on both collapsed fixture runs (run/: MLPs killed by a coupled L2; run2/:
// attention killed by a wrong decoupled decay, with a never-collapsed control): `bitfsck resurrect`
// with no recipe finishes, ends with no collapsed layer, and the validation loss of resurrected.pt —
// as PyTorch computes it with the fixture's own forward (bitnet_reference.window_loss), on the
// claims' windows — is below every collapsed checkpoint's; every claim's interval is the paired one
// of the logged window losses, and the result beats its best baseline or the log says it does not.
#include <catch2/catch.hpp>

#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/io/checkpoint.hpp"
#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

double torch_val_loss(const fs::path& ckpt, const fs::path& val, std::int64_t windows) {
    const fs::path script = test::source_dir() / "tests" / "scripts" / "val_loss.py";
    const auto py = test::run_command(test::python() + " " + test::quote(script) + " " + test::quote(ckpt) + " " + test::quote(val) + " " +
                                      std::to_string(windows));
    INFO(py.err);
    REQUIRE(py.exit_code == 0);
    return std::stod(py.out);
}

nlohmann::json check_cure(const fs::path& run, const fs::path& out, const std::string& extra_flags) {
    const auto r = test::run_command(test::quote(test::cli_path()) + " resurrect " + test::quote(run) + " --tokens " +
                                     test::quote(run / "train.bin") + " --val-tokens " + test::quote(run / "val.bin") + " -o " + test::quote(out) +
                                     extra_flags);
    INFO(r.out << r.err);
    const auto log = test::read_json(out / "resurrection.json");
    // Exit 0: healthy and better than the best baseline by a paired interval above 0; 7: healthy but
    // not better, with that baseline named at the top of the report as the one to use.
    REQUIRE(r.exit_code == (log["beats_best_baseline"].get<bool>() ? 0 : 7));
    if (r.exit_code == 7)
        CHECK(test::read_text(out / "report.html").find("The result does not beat the best baseline") != std::string::npos);
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

    // PyTorch's number for the output, on the claims' windows: the first ones; the search scored its
    // candidates on the rest. Collapsed checkpoints were measured by make_run on all windows: the
    // last collapsed one is measured again here on the claims' windows.
    const auto claim_windows = log["windows"]["claims"].get<std::int64_t>();
    CHECK(log["windows"]["selection"].get<std::int64_t>() > 0);
    REQUIRE(log["stages"][0]["stage"] == "search");
    const double torch_loss = torch_val_loss(out / "resurrected.pt", run / "val.bin", claim_windows);
    CHECK(torch_loss < best_collapsed);
    CHECK(torch_loss < torch_val_loss(log["recipe"]["latest"].get<std::string>(), run / "val.bin", claim_windows));
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
    return log;
}

}  // namespace

TEST_CASE("resurrect with no recipe cures the sample run, by PyTorch's own measure", "[resurrect][slow]") {
    test::TempDir tmp;
    const auto log = check_cure(test::samples_dir() / "run", tmp / "cured", "");
    CHECK(log["beats_best_baseline"] == true);  // on this run the search's winner beats every baseline
}

TEST_CASE("resurrect with no recipe cures the second run (collapsed attention), against its control", "[resurrect][slow]") {
    test::TempDir tmp;
    const fs::path run = test::samples_dir() / "run2";
    const auto log = check_cure(run, tmp / "cured", " --control " + test::quote(run / "control"));
    CHECK(log["beats_best_baseline"] == true);
    // The sick roles were attention's: the graft took them from the last healthy checkpoint.
    const auto& graft = log["stages"][0]["params"]["graft"];
    CHECK(graft["roles"] == nlohmann::json({"attn_q", "attn_k", "attn_v", "attn_o"}));
    // The control's loss, recomputed by PyTorch on the same windows, and the recovered share from it.
    const auto& control = log["control"];
    REQUIRE(control.is_object());
    const auto claim_windows = log["windows"]["claims"].get<std::int64_t>();
    const double control_loss = torch_val_loss(run / "control" / "step_000400.pt", run / "val.bin", claim_windows);
    CHECK(control["measurement"]["val_loss"].get<double>() == Approx(control_loss).epsilon(1e-4));
    const double start = log["start"]["val_loss"], result = log["control"]["comparison"]["result_loss"];
    CHECK(control["recovered"].get<double>() == Approx((start - result) / (start - control_loss)).epsilon(1e-3));
    CHECK(control["tokens"] == log["budget_tokens"]);
}
