#include <catch2/catch.hpp>

#include <algorithm>
#include <regex>

#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/checkpoint.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::analysis;

namespace {

LayerRoleStats role(int layer, Role r, double absmean, Verdict v = Verdict::Healthy) {
    LayerRoleStats l;
    l.layer = layer;
    l.role = r;
    l.tensors = {"layers." + std::to_string(layer) + "." + std::string(role_name(r)) + ".weight"};
    l.count = 4096;
    l.std = absmean * 1.25;
    l.absmean = absmean;
    l.zero = v == Verdict::Healthy ? 0.31 : 0.9;
    l.verdict = v;
    return l;
}

// A report as a scan would give it: two layers, MLP up and attention q, with the given verdicts.
ScanReport report(const std::string& file, std::optional<std::int64_t> step, double mlp_gamma = 0.02,
                  Verdict mlp_verdict = Verdict::Healthy) {
    ScanReport r;
    r.file = file;
    r.step = step;
    for (int layer = 0; layer < 2; ++layer) {
        r.layers.push_back(role(layer, Role::AttnQ, 0.02));
        r.layers.push_back(role(layer, Role::MlpUp, mlp_gamma, layer == 1 ? mlp_verdict : Verdict::Healthy));
    }
    if (mlp_verdict != Verdict::Healthy) {
        r.findings.push_back({mlp_verdict, "std_below", r.layers[3].tensors[0], r.layers[3].tensors[0] + ": std below 1e-03"});
        r.verdict = mlp_verdict;
    }
    return r;
}

}  // namespace

TEST_CASE("steps are read from file names", "[timeline]") {
    CHECK(step_from_file_name("run/step_000400.pt") == 400);
    CHECK(step_from_file_name("ckpt-1200.pt") == 1200);
    CHECK(step_from_file_name("/x/run2/run3_step_300.safetensors") == 300);
    CHECK(step_from_file_name("model.pt.bak") == std::nullopt);
    CHECK(step_from_file_name("step_0.pt") == 0);
    CHECK(step_from_file_name("final.pt") == std::nullopt);
    CHECK(step_from_file_name("x99999999999999999999999.pt") == std::nullopt);  // would overflow
}

TEST_CASE("points are ordered by step, from the report or the file name", "[timeline]") {
    std::vector<ScanReport> reports{report("b/step_300.pt", std::nullopt), report("whatever.pt", 100), report("c/ckpt-200.pt", std::nullopt)};
    Timeline t = build_timeline(reports);
    REQUIRE(t.points.size() == 3);
    CHECK(t.points[0].step == 100);
    CHECK_FALSE(t.points[0].step_from_file_name);
    CHECK(t.points[1].step == 200);
    CHECK(t.points[1].step_from_file_name);
    CHECK(t.points[2].file == "b/step_300.pt");
    CHECK_FALSE(t.onset_step);
    CHECK(t.last_healthy_step == 300);
    CHECK(t.last_healthy_file == "b/step_300.pt");
    CHECK(t.last_before_collapse_step == 300);  // nothing collapsed: the last point
    CHECK_FALSE(t.collapsed_step);
    CHECK(t.final_verdict == Verdict::Healthy);
    CHECK(t.role_onsets.empty());
}

TEST_CASE("a report's own step wins over digits in its name", "[timeline]") {
    Timeline t = build_timeline({report("step_999.pt", 5)});
    CHECK(t.points[0].step == 5);
}

TEST_CASE("a report without any step is an error naming the file", "[timeline]") {
    std::vector<ScanReport> reports{report("step_1.pt", std::nullopt), report("/tmp/final.pt", std::nullopt)};
    CHECK_THROWS_WITH(build_timeline(reports), Catch::Contains("/tmp/final.pt"));
    CHECK_THROWS_AS(build_timeline(reports), TimelineError);
}

TEST_CASE("two reports of the same step are an error naming both", "[timeline]") {
    std::vector<ScanReport> reports{report("a/step_100.pt", std::nullopt), report("b.pt", 100)};
    CHECK_THROWS_WITH(build_timeline(reports), Catch::Contains("a/step_100.pt") && Catch::Contains("b.pt"));
}

TEST_CASE("onset is the first unhealthy step and the last healthy one precedes it", "[timeline]") {
    std::vector<ScanReport> reports{
        report("step_400.pt", 400, 0.0001, Verdict::Collapsed),
        report("step_100.pt", 100),
        report("step_300.pt", 300, 0.001, Verdict::Degraded),
        report("step_200.pt", 200),
        report("step_500.pt", 500, 0.00001, Verdict::Collapsed),
    };
    Timeline t = build_timeline(reports);
    REQUIRE(t.onset_step);
    CHECK(*t.onset_step == 300);
    CHECK(t.onset_file == "step_300.pt");
    CHECK(t.collapsed_step == 400);
    CHECK(t.last_healthy_step == 200);
    CHECK(t.last_healthy_file == "step_200.pt");
    CHECK(t.last_before_collapse_step == 300);
    CHECK(t.last_before_collapse_file == "step_300.pt");
    CHECK(t.final_verdict == Verdict::Collapsed);
    REQUIRE_FALSE(t.reasons.empty());
    CHECK(t.reasons[0].subject == "layers.1.mlp_up.weight");

    // Layer 1's MLP tripped at 300 (its own scan finding); layer 0's only through the 100x gamma
    // fall, which the 0.0001 gamma at step 400 is (0.02 -> 0.0001 = 200x).
    REQUIRE(t.role_onsets.size() == 2);
    CHECK(t.role_onsets[0].layer == 1);
    CHECK(t.role_onsets[0].role == Role::MlpUp);
    CHECK(t.role_onsets[0].step == 300);
    CHECK(t.role_onsets[0].verdict == Verdict::Degraded);
    REQUIRE(t.role_onsets[0].reasons.size() == 1);
    CHECK(t.role_onsets[0].reasons[0].rule == "std_below");
    CHECK(t.role_onsets[1].layer == 0);
    CHECK(t.role_onsets[1].step == 400);
    REQUIRE_FALSE(t.role_onsets[1].reasons.empty());
    CHECK(t.role_onsets[1].reasons[0].rule == "gamma_fell");
}

TEST_CASE("a healthy-looking layer whose gamma fell 100x is degraded", "[timeline]") {
    // Gammas stay above the absolute 1e-3 threshold, so only the cross-checkpoint rule can fire.
    ScanReport first = report("step_0.pt", 0, 0.5);
    ScanReport fell = report("step_1.pt", 1, 0.004);   // 125x below step 0
    ScanReport mild = report("step_2.pt", 2, 0.006);   // 83x below: not past the 100x line
    Timeline t = build_timeline({mild, first, fell});
    REQUIRE(t.points.size() == 3);
    CHECK(t.points[0].verdict == Verdict::Healthy);
    CHECK(t.points[1].scan_verdict == Verdict::Healthy);
    CHECK(t.points[1].verdict == Verdict::Degraded);
    CHECK(t.points[2].verdict == Verdict::Healthy);
    CHECK(t.onset_step == 1);
    CHECK(t.last_healthy_step == 0);
    CHECK(t.final_verdict == Verdict::Healthy);
    const auto& p = t.points[1];
    auto n = std::count_if(p.findings.begin(), p.findings.end(), [](const Finding& f) { return f.rule == "gamma_fell"; });
    CHECK(n == 2);  // both layers' mlp_up; attention kept its gamma
    for (const auto& l : p.layers) CHECK(l.verdict == (l.role == Role::MlpUp ? Verdict::Degraded : Verdict::Healthy));
    auto it = std::find_if(p.findings.begin(), p.findings.end(), [](const Finding& f) { return f.rule == "gamma_fell"; });
    CHECK(it->subject == "layers.0.mlp_up");
    CHECK_THAT(it->message, Catch::Contains("step 0"));

    // The rule follows Thresholds::collapsed_role_ratio.
    for (auto* r : {&first, &fell, &mild}) r->thresholds.collapsed_role_ratio = 1e-3;
    Timeline relaxed = build_timeline({first, fell, mild});
    CHECK_FALSE(relaxed.onset_step);
}

TEST_CASE("role summaries average each ternary role over layers, MLP first", "[timeline]") {
    ScanReport r = report("step_1.pt", 1, 0.01, Verdict::Collapsed);
    LayerRoleStats norm;
    norm.role = Role::Norm;
    norm.layer = 0;
    r.layers.push_back(norm);
    auto roles = summarize_roles(r.layers);
    REQUIRE(roles.size() == 2);  // the norm is not a ternary matrix
    CHECK(roles[0].role == Role::MlpUp);
    CHECK(roles[0].layers == 2);
    CHECK(roles[0].mean_absmean == Approx(0.01));
    CHECK(roles[0].mean_zero == Approx((0.31 + 0.9) / 2));
    CHECK(roles[0].worst == Verdict::Collapsed);
    CHECK(roles[1].role == Role::AttnQ);
    CHECK(roles[1].worst == Verdict::Healthy);
}

TEST_CASE("an unhealthy first checkpoint has no last healthy one", "[timeline]") {
    Timeline t = build_timeline({report("step_1.pt", 1, 0.0001, Verdict::Collapsed), report("step_2.pt", 2)});
    CHECK(t.onset_step == 1);
    CHECK_FALSE(t.last_healthy_step);
    CHECK(t.last_healthy_file.empty());
    CHECK_FALSE(t.last_before_collapse_step);
    CHECK(t.final_verdict == Verdict::Healthy);
}

TEST_CASE("the sample training run's collapse is found at the expected step", "[timeline][sample]") {
    namespace fs = std::filesystem;
    const fs::path run = test::samples_dir() / "run";
    const fs::path expected_file = run / "run.expected.json";
    if (!fs::exists(expected_file)) {
        WARN("no " << expected_file << " (generate with sample_ckpts/make_run.py); skipped");
        return;
    }
    auto expected = test::read_json(expected_file);
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(run))
        if (std::regex_match(e.path().filename().string(), std::regex(R"(step_\d+\.pt)"))) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    REQUIRE(files.size() >= 2);

    std::vector<ScanReport> reports;
    for (const auto& f : files) {
        auto c = io::Checkpoint::open(f);
        reports.push_back(scan_checkpoint(c));
    }
    Timeline t = build_timeline(std::move(reports));
    REQUIRE(t.points.size() == files.size());
    for (const auto& p : t.points) CHECK_FALSE(p.step_from_file_name);  // the run records its steps

    auto optional_step = [](const nlohmann::json& v) { return v.is_null() ? std::optional<std::int64_t>{} : v.get<std::int64_t>(); };
    INFO("onset " << (t.onset_step ? std::to_string(*t.onset_step) : "none") << ", collapsed "
                  << (t.collapsed_step ? std::to_string(*t.collapsed_step) : "none"));
    // run.expected.json's collapse criterion (std < 1e-3 or bitnet zeros > 80% in an MLP tensor)
    // is bitfsck's "collapsed": its onset is our first collapsed step, its last healthy step our
    // last step before collapse.
    CHECK(t.collapsed_step == optional_step(expected["collapse_onset_step"]));
    CHECK(t.last_before_collapse_step == optional_step(expected["last_healthy_step"]));

    // bitfsck's onset is earlier: the first step where anything is degraded. Recompute it from
    // torch's own per-layer figures with bitfsck's default thresholds (std below collapsed_std,
    // ternary zeros above degraded_zero_frac); the other rules must not fire earlier than that.
    const Thresholds defaults;
    std::optional<std::int64_t> first_unhealthy, last_healthy;
    for (const auto& c : expected["checkpoints"]) {
        bool unhealthy = false;
        for (const auto& layer : c["layers"])
            for (const auto& [role, v] : layer.items())
                unhealthy = unhealthy || v["std"].get<double>() < defaults.collapsed_std ||
                            v["ternary_zero_frac"].get<double>() > defaults.degraded_zero_frac;
        if (unhealthy && !first_unhealthy) first_unhealthy = c["step"].get<std::int64_t>();
        if (!first_unhealthy) last_healthy = c["step"].get<std::int64_t>();
    }
    CHECK(t.onset_step == first_unhealthy);
    CHECK(t.last_healthy_step == last_healthy);
    if (t.onset_step) {
        CHECK_FALSE(t.reasons.empty());
        // The run collapses its MLPs and keeps attention learning.
        for (const auto& o : t.role_onsets)
            if (o.step == *t.onset_step) CHECK(role_is_mlp(o.role));
        for (const auto& p : t.points)
            for (const auto& l : p.layers)
                if (role_is_attention(l.role)) CHECK(l.verdict == Verdict::Healthy);
    }
}
