// The app's state logic without a window: sorting, selection, timeline markers, recent files,
// and the background load of a real checkpoint through Job.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "bitfsck/app/app_state.hpp"
#include "bitfsck/app/loader.hpp"
#include "bitfsck/app/settings.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::app;
using analysis::LayerRoleStats;
using analysis::Role;
using analysis::Verdict;

namespace {

LayerRoleStats layer(std::optional<int> index, Role role, double std, double zero_frac, double neg, double zero, double pos,
                     std::int64_t dead, std::int64_t rows, Verdict v) {
    LayerRoleStats l;
    l.layer = index;
    l.role = role;
    l.std = std;
    l.zero_frac = zero_frac;
    l.neg = neg;
    l.zero = zero;
    l.pos = pos;
    l.dead_rows = dead;
    l.rows = rows;
    l.verdict = v;
    l.tensors = {"layers." + (index ? std::to_string(*index) : std::string("x")) + "." + std::string(analysis::role_name(role)) + ".weight"};
    return l;
}

// Four rows whose every column orders them differently from file order.
std::vector<LayerRoleStats> sample_layers() {
    return {
        layer(1, Role::MlpUp, 0.02, 0.00, 0.35, 0.30, 0.35, 0, 64, Verdict::Healthy),
        layer(0, Role::AttnQ, 0.03, 0.10, 0.30, 0.32, 0.38, 2, 32, Verdict::Degraded),
        layer(std::nullopt, Role::MlpDown, 1e-5, 0.90, 0.01, 0.98, 0.01, 60, 64, Verdict::Collapsed),
        layer(0, Role::MlpGate, 0.01, 0.05, 0.40, 0.20, 0.40, 1, 128, Verdict::Healthy),
    };
}

std::vector<std::size_t> order_by(const std::vector<LayerRoleStats>& l, LayerColumn c, bool asc) {
    return layer_order(l, LayerSort{c, asc});
}

using V = std::vector<std::size_t>;

analysis::TimelinePoint point(std::int64_t step, Verdict v, std::vector<LayerRoleStats> layers) {
    analysis::TimelinePoint p;
    p.step = step;
    p.file = "run/step_" + std::to_string(step) + ".pt";
    p.verdict = v;
    p.layers = std::move(layers);
    return p;
}

}  // namespace

TEST_CASE("layer_order sorts by every column, both directions, stably") {
    const auto l = sample_layers();
    // Layer: numbered layers first (0 before 1; at layer 0 attn_q before mlp_gate by role order),
    // the unnumbered row last.
    CHECK(order_by(l, LayerColumn::Layer, true) == V{1, 3, 0, 2});
    CHECK(order_by(l, LayerColumn::Layer, false) == V{2, 0, 3, 1});
    CHECK(order_by(l, LayerColumn::Role, true) == V{1, 2, 3, 0});  // attn_q, mlp_down, mlp_gate, mlp_up
    CHECK(order_by(l, LayerColumn::Std, true) == V{2, 3, 0, 1});
    CHECK(order_by(l, LayerColumn::Std, false) == V{1, 0, 3, 2});
    CHECK(order_by(l, LayerColumn::Zeros, true) == V{0, 3, 1, 2});
    CHECK(order_by(l, LayerColumn::Neg, true) == V{2, 1, 0, 3});
    CHECK(order_by(l, LayerColumn::TernaryZero, false) == V{2, 1, 0, 3});
    CHECK(order_by(l, LayerColumn::Pos, true) == V{2, 0, 1, 3});
    // Dead rows sort by share: 0/64, 2/32 = 6%, 60/64 = 94%, 1/128 < 1%.
    CHECK(order_by(l, LayerColumn::DeadRows, true) == V{0, 3, 1, 2});
    // Verdict: ties (two healthy rows) keep file order in both directions.
    CHECK(order_by(l, LayerColumn::Verdict, true) == V{0, 3, 1, 2});
    CHECK(order_by(l, LayerColumn::Verdict, false) == V{2, 1, 0, 3});

    AppState s;
    sort_layers(s, LayerColumn::Std, false);
    CHECK(s.layer_sort.column == LayerColumn::Std);
    CHECK_FALSE(s.layer_sort.ascending);
}

TEST_CASE("timeline markers sit at the last healthy step, the onset and the first collapsed step") {
    analysis::Timeline t;
    t.points = {point(100, Verdict::Healthy, {}), point(200, Verdict::Healthy, {}), point(300, Verdict::Degraded, {}),
                point(400, Verdict::Collapsed, {})};
    t.last_healthy_step = 200;
    t.last_healthy_file = "run/step_200.pt";
    t.onset_step = 300;
    t.onset_file = "run/step_300.pt";
    t.collapsed_step = 400;
    auto m = timeline_markers(t);
    REQUIRE(m.size() == 3);
    CHECK(m[0].kind == TimelineMarker::Kind::LastHealthy);
    CHECK(m[0].step == 200);
    CHECK(m[0].file == "run/step_200.pt");
    CHECK(m[1].kind == TimelineMarker::Kind::Onset);
    CHECK(m[1].step == 300);
    CHECK(m[1].file == "run/step_300.pt");
    CHECK(m[2].kind == TimelineMarker::Kind::Collapsed);
    CHECK(m[2].step == 400);
    CHECK(m[2].file == "run/step_400.pt");

    SECTION("an onset that is already a collapse is one marker, not two") {
        t.collapsed_step = 300;
        auto m2 = timeline_markers(t);
        REQUIRE(m2.size() == 2);
        CHECK(m2[1].kind == TimelineMarker::Kind::Onset);
    }
    SECTION("a run sick from its first checkpoint has no last healthy marker") {
        t.last_healthy_step.reset();
        t.last_healthy_file.clear();
        auto m2 = timeline_markers(t);
        REQUIRE(m2.size() == 2);
        CHECK(m2[0].kind == TimelineMarker::Kind::Onset);
    }
    SECTION("a healthy run has none") {
        analysis::Timeline healthy;
        healthy.points = {point(100, Verdict::Healthy, {})};
        CHECK(timeline_markers(healthy).empty());
    }
}

TEST_CASE("timeline series follow a layer-role across steps, NaN where it is absent") {
    analysis::Timeline t;
    t.points = {point(10, Verdict::Healthy, {layer(0, Role::MlpUp, 0.02, 0, 0, 0.3, 0, 0, 1, Verdict::Healthy)}),
                point(20, Verdict::Healthy, {layer(1, Role::AttnQ, 0.03, 0, 0, 0.3, 0, 0, 1, Verdict::Healthy)}),
                point(30, Verdict::Collapsed, {layer(0, Role::MlpUp, 1e-6, 0, 0, 0.99, 0, 0, 1, Verdict::Collapsed)})};
    auto labels = timeline_labels(t);
    REQUIRE(labels.size() == 2);
    CHECK(labels[0] == analysis::layer_role_label(0, Role::MlpUp));
    auto std_series = timeline_series(t, labels[0], SeriesFigure::Std);
    REQUIRE(std_series.size() == 3);
    CHECK(std_series[0] == Approx(0.02));
    CHECK(std::isnan(std_series[1]));
    CHECK(std_series[2] == Approx(1e-6));
    auto zeros = timeline_series(t, labels[0], SeriesFigure::TernaryZero);
    CHECK(zeros[2] == Approx(0.99));
}

TEST_CASE("recent files: most recent first, deduplicated, capped, round-tripped through JSON") {
    bitfsck::test::TempDir tmp;
    std::vector<std::string> recent;
    const auto a = tmp / "a.pt", b = tmp / "b.pt";
    add_recent(recent, a);
    add_recent(recent, b);
    add_recent(recent, a);  // again: moves to the front, no duplicate
    REQUIRE(recent.size() == 2);
    CHECK(recent[0] == a.string());
    CHECK(recent[1] == b.string());
    // The same folder spelled differently is one entry.
    add_recent(recent, tmp.path() / "run" / "");
    add_recent(recent, tmp.path() / "sub" / ".." / "run");
    CHECK(recent.size() == 3);
    CHECK(recent[0] == (tmp.path() / "run").string());

    for (int i = 0; i < 30; ++i) add_recent(recent, tmp / ("f" + std::to_string(i) + ".pt"), 5);
    REQUIRE(recent.size() == 5);
    CHECK(recent[0] == (tmp / "f29.pt").string());
    CHECK(recent[4] == (tmp / "f25.pt").string());

    CHECK(recent_from_json(recent_to_json(recent)) == recent);
    CHECK(recent_from_json(recent_to_json(recent), 3).size() == 3);
    CHECK(recent_from_json("not json").empty());
    CHECK(recent_from_json(R"({"recent": ["x", 3, "x", "y"]})") == std::vector<std::string>{"x", "y"});

    save_recent(tmp.path() / "cfg", recent);
    CHECK(load_recent(tmp.path() / "cfg") == recent);
    CHECK(load_recent(tmp.path() / "missing").empty());
}

TEST_CASE("views are named and parsed for --view") {
    for (int i = 0; i < kViewCount; ++i) CHECK(view_from_name(view_name(static_cast<View>(i))) == static_cast<View>(i));
    CHECK(view_from_name("repair") == View::Repair);
    CHECK_FALSE(view_from_name("fix").has_value());
}

TEST_CASE("a job reports failure with the library's message, and cancellation") {
    Job<int> failing("fail", [](JobControl&) -> int { throw io::FormatError("x.pt", "truncated"); });
    REQUIRE(failing.wait(5000));
    CHECK(failing.status() == JobStatus::Failed);
    CHECK(failing.error() == "x.pt: truncated");
    CHECK_FALSE(failing.take().has_value());

    Job<int> waiting("wait", [](JobControl& c) -> int {
        c.progress(1, 4, "quarter");
        while (!c.cancel_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        throw Cancelled();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK_FALSE(waiting.finished());
    CHECK(waiting.fraction() == Approx(0.25));
    CHECK(waiting.label() == "quarter");
    waiting.cancel();
    REQUIRE(waiting.wait(5000));
    CHECK(waiting.status() == JobStatus::Cancelled);

    Job<int> ok("ok", [](JobControl&) { return 42; });
    REQUIRE(ok.wait(5000));
    CHECK(ok.take() == 42);
}

TEST_CASE("loading a real checkpoint in the background fills the state and selects a tensor") {
    const auto sample = bitfsck::test::samples_dir() / "training_checkpoint.pt";
    AppState s;
    start_open(s, sample);
    start_open(s, sample);  // already loading: not twice
    CHECK(s.loads.size() == 1);
    CHECK(busy(s));
    for (int i = 0; i < 6000 && busy(s); ++i) {
        poll_jobs(s);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE_FALSE(busy(s));
    REQUIRE(s.documents.size() == 1);
    const Document& d = s.documents.front();
    CHECK_FALSE(d.is_run);
    CHECK(s.selected_document == d.id);
    const CheckpointData* c = current_checkpoint(s);
    REQUIRE(c);
    CHECK(c->report.step == 1234);
    CHECK_FALSE(c->report.tensors.empty());
    // The pickle carries a user class (__main__.TrainConfig): a security finding.
    CHECK_FALSE(c->report.security.empty());
    CHECK(c->tree.children.size() > 3);
    CHECK(s.recent.size() == 1);

    // A tensor is selected from the start, and selection by name works only for names that exist.
    REQUIRE(s.tensor_a);
    CHECK(find_tensor_stats(s, *s.tensor_a));
    const std::string name = c->report.tensors.back().name;
    CHECK(select_tensor(s, name, 0));
    CHECK(s.tensor_a->name == name);
    CHECK(select_tensor(s, c->report.tensors.front().name, 1));
    CHECK(s.tensor_b->name == c->report.tensors.front().name);
    CHECK_FALSE(select_tensor(s, "no.such.tensor", 0));
    CHECK(s.tensor_a->name == name);

    // Selecting a layer-role row selects its first tensor.
    const auto* layers = current_layers(s);
    REQUIRE(layers);
    REQUIRE_FALSE(layers->empty());
    CHECK(select_layer(s, 0));
    CHECK(s.selected_layer == 0u);
    CHECK(s.tensor_a->name == (*layers)[0].tensors.front());
    CHECK_FALSE(select_layer(s, layers->size()));

    // Opening the same file again replaces the document instead of adding a second.
    start_open(s, sample);
    for (int i = 0; i < 6000 && busy(s); ++i) {
        poll_jobs(s);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(s.documents.size() == 1);

    close_document(s, s.selected_document);
    CHECK(s.documents.empty());
    CHECK(s.selected_document == 0);
    CHECK_FALSE(s.tensor_a.has_value());
}

TEST_CASE("a collapsed tensor is shown next to a healthy one of its role") {
    analysis::ScanReport r;
    for (int i = 0; i < 4; ++i) {
        analysis::TensorStats t;
        t.name = "model.layers." + std::to_string(i) + ".mlp.up_proj.weight";
        r.tensors.push_back(t);
    }
    analysis::TensorStats attn;
    attn.name = "model.layers.2.self_attn.q_proj.weight";
    r.tensors.push_back(attn);
    r.findings.push_back({Verdict::Collapsed, "std_below", r.tensors[2].name, "dead"});
    r.findings.push_back({Verdict::Degraded, "zeros_above", r.tensors[1].name, "sick"});
    // The nearest healthy layer of the same role: layer 3 (layer 1 is degraded, attn is another role).
    CHECK(healthy_counterpart(r, r.tensors[2].name) == r.tensors[3].name);
    r.findings.push_back({Verdict::Degraded, "zeros_above", r.tensors[3].name, "sick"});
    CHECK(healthy_counterpart(r, r.tensors[2].name) == r.tensors[0].name);
    r.findings.push_back({Verdict::Degraded, "zeros_above", r.tensors[0].name, "sick"});
    CHECK_FALSE(healthy_counterpart(r, r.tensors[2].name).has_value());
}

TEST_CASE("a run folder loads as a timeline whose points are its checkpoints", "[run]") {
    const auto run = bitfsck::test::samples_dir() / "run";
    auto files = bitfsck::io::checkpoint_files_in(run);
    // train.bin and val.bin are token arrays, not checkpoints: the folder listing leaves them out.
    REQUIRE(files.size() == 7);
    for (const auto& f : files) CHECK(f.extension() == ".pt");
    JobControl control;
    Document d = load_document(run, control);
    REQUIRE(d.is_run);
    REQUIRE(d.timeline);
    REQUIRE(d.checkpoints.size() == d.timeline->points.size());
    for (std::size_t i = 0; i < d.checkpoints.size(); ++i) CHECK(d.checkpoints[i]->report.file == d.timeline->points[i].file);
    // train.bin / val.bin are data, not checkpoints: the folder listing never offers them.
    CHECK(d.checkpoints.size() == 7);
    CHECK(d.skipped.empty());

    AppState s;
    add_document(s, std::move(d));
    const Document* doc = selected_document(s);
    REQUIRE(doc);
    // A run opens on its last checkpoint, and markers come from its timeline.
    CHECK(doc->current == doc->checkpoints.size() - 1);
    CHECK(s.markers == std::vector<TimelineMarker>(timeline_markers(*doc->timeline)));
    CHECK(select_step(s, doc->timeline->points.front().step));
    CHECK(selected_document(s)->current == 0);
    CHECK_FALSE(select_step(s, -12345));
    auto pair = default_compare_pair(s);
    REQUIRE(pair);
    CHECK(pair->first.document == doc->id);
    CHECK_FALSE(pair->first == pair->second);
}
