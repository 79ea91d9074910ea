// The induction view's logic without a window: figure names and meanings, hit-testing the heat
// map, the colour scale, the top head, the probes kept per checkpoint, and (where model/ is
// built) a real probe run through the app's job, which must give exactly the library's report.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <thread>

#include "bitfsck/app/app_state.hpp"
#include "bitfsck/app/induction.hpp"
#include "bitfsck/app/loader.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::app;

namespace {

void wait_idle(AppState& s, int seconds = 120) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (busy(s) && std::chrono::steady_clock::now() < deadline) {
        poll_jobs(s);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    poll_jobs(s);
}

bool logged(const AppState& s, LogLine::Level level, const std::string& part) {
    for (const auto& l : s.log)
        if (l.level == level && l.text.find(part) != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_CASE("the induction view is a view, and every figure is named and explained") {
    REQUIRE(view_from_name("induction") == View::Induction);
    CHECK(view_name(View::Induction) == "induction");
    CHECK(static_cast<int>(View::Induction) == kViewCount - 3);  // repair and resurrect come last
    CHECK(induction_metric_name(InductionMetric::Ipmr) == "IPMR");
    CHECK(induction_metric_name(InductionMetric::Induction) == "induction score");
    for (int i = 0; i < kInductionMetricCount; ++i) CHECK_FALSE(explain_induction_metric(static_cast<InductionMetric>(i)).empty());
    // The definitions of bitfsck/model/induction.hpp: argmax on j + 1, mass on j + 1, on t - 1, on j.
    CHECK(explain_induction_metric(InductionMetric::Ipmr).find("argmax attention falls exactly on j + 1") != std::string::npos);
    CHECK(explain_induction_metric(InductionMetric::Induction).find("mean attention mass the head puts on j + 1") != std::string::npos);
    CHECK(explain_induction_metric(InductionMetric::PreviousToken).find("t - 1") != std::string::npos);
    CHECK(explain_induction_metric(InductionMetric::DuplicateToken).find("on j itself") != std::string::npos);
    InductionParams p;
    CHECK(params_label(p) == "cpu, 8 x 64 tokens x2, seed 1234, quantized");
    p.quantized = false;
    p.device = "cuda";
    CHECK(params_label(p) == "cuda, 8 x 64 tokens x2, seed 1234, unquantized");
    CHECK(head_label({3, 11}) == "L3.H11");
}

TEST_CASE("the cell under the pointer") {
    HeatGrid g;
    g.x = 100;
    g.y = 50;
    g.cell_w = 20;
    g.cell_h = 10;
    g.layers = 3;
    g.heads = 4;
    CHECK(head_at(g, 100, 50) == HeadCell{0, 0});
    CHECK(head_at(g, 119.9f, 59.9f) == HeadCell{0, 0});
    CHECK(head_at(g, 120, 60) == HeadCell{1, 1});
    CHECK(head_at(g, 179, 79) == HeadCell{2, 3});
    CHECK_FALSE(head_at(g, 180, 55).has_value());  // right of the last head
    CHECK_FALSE(head_at(g, 150, 80).has_value());  // below the last layer
    CHECK_FALSE(head_at(g, 99.5f, 55).has_value());
    CHECK_FALSE(head_at(g, 150, 49).has_value());
    // ImGui puts the pointer at -FLT_MAX when there is none (and in screenshots).
    CHECK_FALSE(head_at(g, -std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()).has_value());
    CHECK_FALSE(head_at(g, std::nanf(""), 55).has_value());
    g.heads = 0;
    CHECK_FALSE(head_at(g, 100, 50).has_value());
}

TEST_CASE("the colour scale maps figures into [0, 1]") {
    CHECK(colour_fraction(0.5, {0, 1}) == Approx(0.5));
    CHECK(colour_fraction(0.02, {0, 0.04}) == Approx(0.5));
    CHECK(colour_fraction(0.08, {0, 0.04}) == 1.0);
    CHECK(colour_fraction(-1, {0, 1}) == 0.0);
    CHECK(colour_fraction(std::nan(""), {0, 1}) == 0.0);
    CHECK(colour_fraction(0.0, {0, 0}) == 0.0);  // an all-zero report
}

#ifdef BITFSCK_APP_HAVE_MODEL

namespace {

// 3 layers x 4 heads: head (l, h) has IPMR (l*4 + h) / 100 except where set below.
model::InductionReport fake_report() {
    model::InductionReport r;
    r.file = "fake.pt";
    r.layers = 3;
    r.heads = 4;
    r.specialist_threshold = 0.05;
    r.metrics.assign(3, std::vector<model::HeadMetrics>(4));
    for (int l = 0; l < 3; ++l)
        for (int h = 0; h < 4; ++h) {
            auto& m = r.metrics[l][h];
            m.ipmr = (l * 4 + h) / 100.0;
            m.induction = 0.01;
            m.previous_token = 0.02;
            m.duplicate_token = 0.03;
        }
    r.metrics[1][2].induction = 0.4;       // the induction-score top head
    r.metrics[0][3].previous_token = 0.9;  // the previous-token head
    r.metrics[2][3].ipmr = std::nan("");   // NaN never wins
    model::rank_heads(r, 5);
    return r;
}

}  // namespace

TEST_CASE("top head, colour range and hover text from a report") {
    const model::InductionReport r = fake_report();
    CHECK(top_head(r, InductionMetric::Ipmr) == HeadCell{2, 2});
    CHECK(top_head(r, InductionMetric::Induction) == HeadCell{1, 2});
    CHECK(top_head(r, InductionMetric::PreviousToken) == HeadCell{0, 3});
    // All equal: the first head wins.
    CHECK(top_head(r, InductionMetric::DuplicateToken) == HeadCell{0, 0});
    CHECK_FALSE(top_head(model::InductionReport{}, InductionMetric::Ipmr).has_value());
    // The app's top head by IPMR is the library's first ranked head, whose ties go to the larger
    // induction score.
    REQUIRE_FALSE(r.top.empty());
    CHECK(HeadCell{r.top.front().layer, r.top.front().head} == top_head(r, InductionMetric::Ipmr));
    model::InductionReport tie = r;
    tie.metrics[0][1].ipmr = 0.10;
    tie.metrics[0][1].induction = 0.5;
    model::rank_heads(tie, 5);
    CHECK(top_head(tie, InductionMetric::Ipmr) == HeadCell{0, 1});
    tie.top.clear();  // unranked: the first of the largest
    tie.metrics[0][1].induction = 0.0;
    CHECK(top_head(tie, InductionMetric::Ipmr) == HeadCell{0, 1});

    auto range = colour_range(r, InductionMetric::Ipmr, true);
    CHECK(range.lo == 0.0);
    CHECK(range.hi == Approx(0.10));
    CHECK(colour_fraction(metric_value(r.metrics[2][2], InductionMetric::Ipmr), range) == 1.0);
    range = colour_range(r, InductionMetric::Ipmr, false);
    CHECK(range.hi == 1.0);
    model::InductionReport zeros = r;
    for (auto& row : zeros.metrics)
        for (auto& m : row) m.ipmr = 0;
    CHECK(colour_range(zeros, InductionMetric::Ipmr, true).hi == 1.0);

    CHECK(head_metrics(r, {1, 2}) == &r.metrics[1][2]);
    CHECK(head_metrics(r, {3, 0}) == nullptr);
    CHECK(head_metrics(r, {0, 4}) == nullptr);
    CHECK(head_metrics(r, {-1, 0}) == nullptr);

    const std::string t = head_tooltip(r, {2, 2}, InductionMetric::Ipmr);
    CHECK(t.find("layer 2, head 2 (L2.H2)") != std::string::npos);
    CHECK(t.find("> IPMR  0.1000") != std::string::npos);
    CHECK(t.find("induction score  0.0100") != std::string::npos);
    CHECK(t.find("A specialist") != std::string::npos);
    CHECK(t.find("The top head by IPMR") != std::string::npos);
    CHECK(t.find("argmax attention") != std::string::npos);
    const std::string weak = head_tooltip(r, {0, 1}, InductionMetric::Induction);
    CHECK(weak.find("A specialist") == std::string::npos);
    CHECK(weak.find("> induction score") != std::string::npos);
    CHECK(head_tooltip(r, {5, 5}, InductionMetric::Ipmr).find("no such head") != std::string::npos);
}

TEST_CASE("probe options follow the parameters") {
    InductionParams p;
    p.device = "cuda";
    p.seq_len = 32;
    p.batch = 3;
    p.seed = 7;
    auto o = induction_options(p);
    CHECK(o.load.device == "cuda");
    CHECK(o.seq_len == 32);
    CHECK(o.batch == 3);
    CHECK(o.seed == 7);
    CHECK_FALSE(o.tokens_file.has_value());
    CHECK_FALSE(o.load.config.overrides.contains("quantize"));
    p.quantized = false;
    CHECK(induction_options(p).load.config.overrides["quantize"] == false);
}

TEST_CASE("probes are kept per checkpoint, the latest shown, and dropped with their document") {
    AppState s;
    const CheckpointRef a{1, 0}, b{1, 1}, c{2, 0};
    CHECK(induction_result_for(s, a) == nullptr);
    add_induction_result(s, {a, {}, fake_report()});
    REQUIRE(induction_result_for(s, a));
    CHECK(s.induction.selected == HeadCell{2, 2});  // the top head by IPMR is picked
    InductionParams other;
    other.seed = 99;
    add_induction_result(s, {a, other, fake_report()});
    CHECK(s.induction.results.size() == 1);  // replaces the older probe of the same checkpoint
    CHECK(induction_result_for(s, a)->params.seed == 99);
    add_induction_result(s, {b, {}, fake_report()});
    add_induction_result(s, {c, {}, fake_report()});
    CHECK(induction_result_for(s, b));
    CHECK(induction_result_for(s, c));
    // Document 1 is not open here: closing it drops its probes only.
    close_document(s, 1);
    CHECK(induction_result_for(s, a) == nullptr);
    CHECK(induction_result_for(s, b) == nullptr);
    CHECK(induction_result_for(s, c));
    for (std::size_t i = 0; i < kMaxInductionResults + 5; ++i) add_induction_result(s, {{3, i}, {}, fake_report()});
    CHECK(s.induction.results.size() == kMaxInductionResults);
    CHECK(induction_result_for(s, {3, kMaxInductionResults + 4}));
    CHECK(induction_result_for(s, {3, 0}) == nullptr);
}

TEST_CASE("the probe runs in the background and gives the library's report", "[model]") {
    const auto file = bitfsck::test::samples_dir() / "models" / "llama_student.pt";
    AppState s;
    start_open(s, file);
    wait_idle(s);
    const auto ref = current_checkpoint_ref(s);
    REQUIRE(ref);
    CHECK_FALSE(start_induction(s, {ref->document + 100, 0}, {}));  // not open
    CHECK(logged(s, LogLine::Level::Error, "open a checkpoint first"));

    InductionParams p;
    p.batch = 4;
    p.seq_len = 32;
    REQUIRE(start_induction(s, *ref, p));
    CHECK(busy(s));
    std::string label;
    overall_progress(s, &label);
    CHECK(label.find("induction probe of llama_student.pt") != std::string::npos);
    wait_idle(s);
    REQUIRE_FALSE(busy(s));
    const InductionResult* r = induction_result_for(s, *ref);
    REQUIRE(r);
    CHECK(r->params == p);
    CHECK(r->report.layers == 2);
    CHECK(r->report.heads == 4);
    CHECK(r->report.batch == 4);
    CHECK(r->report.seq_len == 32);
    CHECK(logged(s, LogLine::Level::Info, "heads with IPMR >= 0.05"));
    CHECK(s.induction.selected == top_head(r->report, InductionMetric::Ipmr));

    // The app adds nothing: the library on the same checkpoint gives the same figures.
    const model::InductionReport direct = model::run_induction(*current_checkpoint(s)->checkpoint, induction_options(p));
    REQUIRE(direct.metrics.size() == r->report.metrics.size());
    for (std::size_t l = 0; l < direct.metrics.size(); ++l)
        for (std::size_t h = 0; h < direct.metrics[l].size(); ++h) {
            CHECK(r->report.metrics[l][h].ipmr == direct.metrics[l][h].ipmr);
            CHECK(r->report.metrics[l][h].induction == Approx(direct.metrics[l][h].induction).margin(1e-12));
        }
    CHECK(r->report.eligible_positions == direct.eligible_positions);

    SECTION("unquantized runs the same weights without the quantizer") {
        p.quantized = false;
        REQUIRE(start_induction(s, *ref, p));
        wait_idle(s);
        REQUIRE(induction_result_for(s, *ref));
        CHECK_FALSE(induction_result_for(s, *ref)->report.config.quantize);
    }
    SECTION("cancel leaves nothing running and keeps the older result") {
        p.seed = 5;
        REQUIRE(start_induction(s, *ref, p));
        cancel_all(s);
        // The probe stops at its next step; its ending is handled by the poll like any other.
        for (int i = 0; i < 2000 && s.jobs.size() > 0; ++i) {
            poll_jobs(s);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        CHECK_FALSE(busy(s));
        CHECK(s.jobs.size() == 0);
        CHECK_FALSE(s.induction.job);
        CHECK(logged(s, LogLine::Level::Info, "cancelled: induction probe"));
        CHECK(induction_result_for(s, *ref)->params.seed == 1234);
    }
    SECTION("a device LibTorch cannot use fails with the library's reason in the log") {
        p.device = "nonsense";
        REQUIRE(start_induction(s, *ref, p));
        wait_idle(s);
        CHECK(logged(s, LogLine::Level::Error, "nonsense"));
    }
}

#else

TEST_CASE("without model/ the probe cannot start and says why") {
    AppState s;
    CHECK_FALSE(kHaveModel);
    CHECK_FALSE(start_induction(s, {1, 0}, {}));
    CHECK(logged(s, LogLine::Level::Error, "built without model/"));
}

#endif
