// The repair view's logic without a window: options built from the UI parameters, the default
// tensor of the preview, where the output goes, and a preview and a run through the app's jobs
// on the collapsed end of the sample run (the output opened next to its source).
#include <catch2/catch.hpp>


#include <chrono>
#include <fstream>
#include <thread>

#include "bitfsck/app/app_state.hpp"
#include "bitfsck/app/loader.hpp"
#include "bitfsck/app/repair_view.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace bitfsck;
using namespace bitfsck::app;
using analysis::Role;
using analysis::Verdict;
using repair::StepKind;

namespace {

analysis::TensorStats tensor(const std::string& name, std::vector<std::int64_t> shape) {
    analysis::TensorStats t;
    t.name = name;
    t.shape = std::move(shape);
    return t;
}

analysis::LayerRoleStats layer(int i, Role role, Verdict v, std::vector<std::string> tensors) {
    analysis::LayerRoleStats l;
    l.layer = i;
    l.role = role;
    l.verdict = v;
    l.tensors = std::move(tensors);
    return l;
}

analysis::ScanReport sample_scan() {
    analysis::ScanReport r;
    r.tensors = {tensor("emb.weight", {100, 16}), tensor("layers.0.attn.q.weight", {16, 16}), tensor("layers.0.mlp.up.weight", {64, 16}),
                 tensor("layers.0.mlp.up.bias", {64}), tensor("layers.1.mlp.up.weight", {64, 16}), tensor("layers.1.attn.q.weight", {16, 16})};
    r.layers = {layer(0, Role::AttnQ, Verdict::Healthy, {"layers.0.attn.q.weight"}),
                layer(0, Role::MlpUp, Verdict::Degraded, {"layers.0.mlp.up.bias", "layers.0.mlp.up.weight"}),
                layer(1, Role::AttnQ, Verdict::Healthy, {"layers.1.attn.q.weight"}),
                layer(1, Role::MlpUp, Verdict::Collapsed, {"layers.1.mlp.up.weight"})};
    return r;
}

fs::path last_run_step() {
    fs::path last;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(test::samples_dir() / "run", ec))
        if (e.path().extension() == ".pt" && (last.empty() || e.path().filename() > last.filename())) last = e.path();
    return last;
}

void wait_idle(AppState& s) {
    const auto start = std::chrono::steady_clock::now();
    while (busy(s) && std::chrono::steady_clock::now() - start < std::chrono::seconds(120)) {
        poll_jobs(s);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    poll_jobs(s);
    REQUIRE_FALSE(busy(s));
}

}  // namespace

TEST_CASE("the repair view is the last view, and every step is explained") {
    REQUIRE(view_from_name("repair") == View::Repair);
    CHECK(view_name(View::Repair) == "repair");
    CHECK(static_cast<int>(View::Repair) == kViewCount - 2);  // resurrect comes last
    for (const auto k : kRepairSteps) CHECK_FALSE(explain_repair_step(k).empty());
    CHECK(explain_repair_step(StepKind::Inflate).find("dead zone") != std::string::npos);
}

TEST_CASE("repair options come from the UI parameters and the scan") {
    analysis::ScanReport scan;
    scan.quantizer = analysis::Quantizer::Distillix;
    scan.thresholds.collapsed_std = 0.0123;
    RepairParams p;
    CHECK(p.step == StepKind::Inflate);  // the view's default: inflate 0.3 / 0.5, as the CLI's
    CHECK(p.zeros == 0.3);
    CHECK(p.tau == 0.5);

    p.step = StepKind::Svd;
    p.rule = repair::RankRule::Fixed;
    p.rank = 5;
    p.like = "/x/healthy.pt";
    auto o = repair_options(p, scan);
    CHECK(o.step.kind == StepKind::Svd);
    CHECK(o.step.svd.rule == repair::RankRule::Fixed);
    CHECK(o.step.svd.rank == 5);
    CHECK_FALSE(o.like);  // svd takes no reference
    CHECK(o.selection.is_default());
    CHECK(o.quantizer == analysis::Quantizer::Distillix);
    CHECK(o.thresholds.collapsed_std == 0.0123);
    CHECK(repair_params_label(p) == "svd rank 5");

    p.step = StepKind::Align;
    p.strength = 0.5;
    p.width = 0.2;
    o = repair_options(p, scan, "layers.1.mlp.up.weight");
    CHECK(o.step.kind == StepKind::Align);
    CHECK(o.step.align.strength == 0.5);
    CHECK(o.step.align.width == 0.2);
    REQUIRE(o.like);
    CHECK(*o.like == fs::path("/x/healthy.pt"));
    CHECK(o.selection.match == std::vector<std::string>{"layers.1.mlp.up.weight"});

    p.step = StepKind::Inflate;
    p.zeros = 0.25;
    p.tau = 0.4;
    p.like.clear();
    o = repair_options(p, scan);
    CHECK(o.step.inflate.zeros == 0.25);
    CHECK(o.step.inflate.tau == 0.4);
    CHECK_FALSE(o.like);
    CHECK(repair_params_label(p) == "inflate zeros 0.25 tau 0.4");
}

TEST_CASE("the preview's default tensor: the one picked, else the first collapsed matrix") {
    const analysis::ScanReport scan = sample_scan();
    CHECK(default_repair_tensor(scan, std::nullopt) == "layers.1.mlp.up.weight");      // collapsed before degraded
    CHECK(default_repair_tensor(scan, "layers.0.attn.q.weight") == "layers.0.attn.q.weight");
    CHECK(default_repair_tensor(scan, "layers.0.mlp.up.bias") == "layers.1.mlp.up.weight");  // not a matrix
    CHECK(default_repair_tensor(scan, "nope") == "layers.1.mlp.up.weight");
    analysis::ScanReport degraded = scan;
    degraded.layers[3].verdict = Verdict::Healthy;
    CHECK(default_repair_tensor(degraded, std::nullopt) == "layers.0.mlp.up.weight");  // skips the bias
    analysis::ScanReport healthy = degraded;
    healthy.layers[1].verdict = Verdict::Healthy;
    CHECK(default_repair_tensor(healthy, std::nullopt) == "emb.weight");
    CHECK_FALSE(default_repair_tensor(analysis::ScanReport{}, std::nullopt));
}

TEST_CASE("the output goes beside the input, else to the temp folder, never over anything") {
    test::TempDir dir, tmp;
    const fs::path in = dir / "ckpt.pt";
    std::ofstream(in) << "x";
    CHECK(folder_writable(dir.path()));
    CHECK_FALSE(folder_writable(dir / "missing"));
    CHECK(repair_output_path(in, StepKind::Inflate, true, tmp.path()) == dir / "ckpt.inflate.pt");
    CHECK(repair_output_path(in, StepKind::Svd, false, tmp.path()) == tmp / "ckpt.svd.pt");
    CHECK(repair_output_path(dir / "model.safetensors", StepKind::Align, true, tmp.path()) == dir / "model.align.safetensors");
    CHECK(repair_output_path(dir / "model.bin", StepKind::Align, true, tmp.path()) == dir / "model.align.pt");
    std::ofstream(dir / "ckpt.inflate.pt") << "taken";
    CHECK(repair_output_path(in, StepKind::Inflate, true, tmp.path()) == dir / "ckpt.inflate.2.pt");
    CHECK(repair_output_path(in, StepKind::Inflate) == dir / "ckpt.inflate.2.pt");
    // An input named like an output never gets itself back.
    const fs::path again = dir / "ckpt.inflate.2.pt";
    std::ofstream(again) << "x";
    CHECK(repair_output_path(again, StepKind::Inflate, true, tmp.path()) == dir / "ckpt.inflate.2.inflate.pt");
}

TEST_CASE("preview and run through the app's jobs: the output opens next to its source", "[run]") {
    const fs::path src = last_run_step();
    REQUIRE_FALSE(src.empty());  // the sample run is committed (sample_ckpts/make_run.py)
    test::TempDir dir;
    const fs::path input = dir / src.filename().string();
    fs::copy_file(src, input);

    AppState s;
    start_open(s, input);
    wait_idle(s);
    REQUIRE(s.documents.size() == 1);
    const CheckpointRef ref{s.documents[0].id, 0};
    const CheckpointData* c = find_checkpoint(s, ref);
    REQUIRE(c);
    REQUIRE(c->report.verdict == Verdict::Collapsed);
    const auto name = default_repair_tensor(c->report, std::nullopt);
    REQUIRE(name);

    // Synchronous (the screenshot's) and background previews agree.
    REQUIRE(run_repair_preview(s, ref, *name, s.repair.params));
    REQUIRE(s.repair.preview);
    const repair::TensorPreview sync = s.repair.preview->preview;
    CHECK(sync.repair.name == *name);
    CHECK(sync.after_stats.ternary.zero <= 0.3 + 1e-9);
    CHECK(sync.before_stats.ternary.zero > sync.after_stats.ternary.zero);
    CHECK_FALSE(sync.before_stats.values.counts.empty());
    CHECK_FALSE(sync.after_stats.values.counts.empty());
    s.repair.preview.reset();
    REQUIRE(start_repair_preview(s, ref, *name, s.repair.params));
    wait_idle(s);
    REQUIRE(s.repair.preview);
    CHECK(s.repair.preview->preview.after_stats.ternary.zero == sync.after_stats.ternary.zero);

    // A missing tensor: an error, no preview.
    s.repair.preview.reset();
    CHECK_FALSE(run_repair_preview(s, ref, "no.such.weight", s.repair.params));
    CHECK_FALSE(s.repair.preview_error.empty());

    const fs::path out = repair_output_path(input, s.repair.params.step);
    CHECK(out == dir / (input.stem().string() + ".inflate.pt"));
    REQUIRE(start_repair_run(s, ref, s.repair.params, out));
    CHECK_FALSE(start_repair_run(s, ref, s.repair.params, out));  // one at a time
    wait_idle(s);
    REQUIRE(s.repair.last_run);
    CHECK(fs::exists(out));
    CHECK(fs::exists(repair::repair_log_path(out)));
    CHECK(s.repair.last_run->log.verdict_before == Verdict::Collapsed);
    CHECK_FALSE(s.repair.last_run->log.tensors.empty());
    CHECK(verdict_change(s.repair.last_run->log).rfind("collapsed -> ", 0) == 0);
    // Opened as a second document and compared with the original.
    REQUIRE(s.documents.size() == 2);
    CHECK(s.documents[1].path == out);
    REQUIRE(s.compare_a);
    REQUIRE(s.compare_b);
    CHECK(*s.compare_a == ref);
    CHECK(s.compare_b->document == s.documents[1].id);
    CHECK_FALSE(s.repair.open_pending);
}
