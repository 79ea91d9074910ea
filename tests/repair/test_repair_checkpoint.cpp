// Repairs of real PyTorch checkpoints: the planted low-rank fixture (sample_ckpts/repair/) and the
// collapsed sample run (sample_ckpts/run/). Every claim is checked on the written file by a fresh
// read or scan, never by the step's own bookkeeping.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <map>

#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/mapped_file.hpp"
#include "bitfsck/repair/repair.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::repair;
namespace fs = std::filesystem;

namespace {

std::vector<double> values(const io::Checkpoint& c, const io::TensorEntry& t) {
    std::vector<double> v(static_cast<std::size_t>(t.numel()));
    c.data(t).read(0, t.numel(), v.data());
    return v;
}

bool bit_equal(const std::vector<double>& a, const std::vector<double>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

std::string hash_of(const fs::path& p) {
    const io::MappedFile f(p);
    return analysis::content_hash(f);
}

// Every tensor of `before` (state dict, optimizer state, anything) that is not in `changed` has
// the same values in `after`, bit for bit; returns how many were compared.
int check_carried_over(const fs::path& before_path, const fs::path& after_path, const std::vector<std::string>& changed) {
    const io::Checkpoint before = io::Checkpoint::open(before_path), after = io::Checkpoint::open(after_path);
    int compared = 0;
    for (const auto& t : before.tensors()) {
        if (std::find(changed.begin(), changed.end(), t.name) != changed.end()) continue;
        const io::TensorEntry* u = nullptr;
        for (const auto& a : after.tensors())
            if (a.path == t.path) u = &a;
        INFO(t.path);
        REQUIRE(u != nullptr);
        CHECK(u->dtype == t.dtype);
        CHECK(u->shape == t.shape);
        CHECK(bit_equal(values(before, t), values(after, *u)));
        ++compared;
    }
    return compared;
}

double rel_error(const std::vector<double>& a, const std::vector<double>& ref) {
    double d = 0, n = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        d += (a[i] - ref[i]) * (a[i] - ref[i]);
        n += ref[i] * ref[i];
    }
    return std::sqrt(d / n);
}

const fs::path kLowRank = test::samples_dir() / "repair" / "lowrank.pt";
const fs::path kRun = test::samples_dir() / "run";

}  // namespace

TEST_CASE("repair svd recovers the planted rank of real PyTorch matrices and carries the rest over", "[repair][svd]") {
    test::TempDir tmp;
    const auto expected = test::read_json(test::samples_dir() / "repair" / "lowrank.expected.json");
    const std::string input_hash = hash_of(kLowRank);
    RepairOptions options;
    options.step.kind = StepKind::Svd;
    options.selection.roles = {"mlp"};
    const fs::path out = tmp / "svd.pt";
    const RepairLog log = repair_checkpoint(kLowRank, out, options);

    REQUIRE(log.tensors.size() == 6);
    CHECK(hash_of(kLowRank) == input_hash);  // the input is never touched
    CHECK(log.input_hash == input_hash);
    const io::Checkpoint clean = io::Checkpoint::open(test::samples_dir() / "repair" / "lowrank_clean.pt");
    const io::Checkpoint noisy = io::Checkpoint::open(kLowRank);
    const io::Checkpoint written = io::Checkpoint::open(out);
    std::vector<std::string> changed;
    for (const auto& t : log.tensors) {
        INFO(t.name);
        const auto& e = expected["tensors"][t.name];
        REQUIRE(t.svd.has_value());
        CHECK(t.svd->rank == expected["planted_rank"].get<int>());
        CHECK(t.svd->rank == e["gavish_donoho_rank"].get<int>());
        CHECK(t.svd->threshold == Approx(e["gavish_donoho_threshold"].get<double>()).epsilon(1e-4));
        CHECK(t.svd->top_singular_values[0] == Approx(e["top_singular_values"][0].get<double>()).epsilon(1e-5));
        CHECK(t.svd->solver == "spectra_partial");
        const auto c = values(clean, *clean.find_tensor(t.name));
        const auto repaired = values(written, *written.find_tensor(t.name));
        // The error to the clean signal is what torch's own rank-6 truncation gives, well below the noise.
        const double err = rel_error(repaired, c);
        CHECK(err == Approx(e["truncated_rel_error"].get<double>()).epsilon(1e-3));
        CHECK(err < 0.5 * e["noisy_rel_error"].get<double>());
        CHECK(rel_error(values(noisy, *noisy.find_tensor(t.name)), c) == Approx(e["noisy_rel_error"].get<double>()).epsilon(1e-5));
        changed.push_back(t.name);
    }
    // Attention, norms, the optimizer's moments: all carried over bit for bit; the step survives.
    CHECK(check_carried_over(kLowRank, out, changed) > 30);
    CHECK(written.step() == 1000);

    // The log's "after" figures are a fresh scan of the output.
    const analysis::ScanReport rescan = analysis::scan_checkpoint(written);
    for (const auto& t : log.tensors)
        for (const auto& s : rescan.tensors)
            if (s.name == t.name) {
                CHECK(t.after.std == s.std);
                CHECK(t.after.zero == s.ternary.zero);
            }
    CHECK(log.output_hash == rescan.content_hash);
    const auto j = test::read_json(repair_log_path(out));
    CHECK(j["schema_version"] == kRepairSchemaVersion);
    CHECK(j["step"]["kind"] == "svd");
    CHECK(j["tensors"].size() == 6);
}

TEST_CASE("repair replay reproduces the output bit for bit, and refuses a changed input", "[repair][replay]") {
    test::TempDir tmp;
    const fs::path input = tmp / "in.pt";
    fs::copy_file(kRun / "step_000350.pt", input);
    RepairOptions options;
    options.step.kind = StepKind::Inflate;
    options.step.inflate.seed = 7;
    options.like = kRun / "step_000050.pt";
    const RepairLog log = repair_checkpoint(input, tmp / "a.pt", options);
    const ReplayResult again = replay_repair(repair_log_path(tmp / "a.pt"), tmp / "b.pt");
    CHECK(again.identical);
    CHECK(again.expected_hash == log.output_hash);
    CHECK(hash_of(tmp / "b.pt") == hash_of(tmp / "a.pt"));

    // The same repair with other thread counts gives the same bytes.
    options.threads = 1;
    const RepairLog one = repair_checkpoint(input, tmp / "c.pt", options);
    CHECK(one.output_hash == log.output_hash);

    // A changed input is refused with a message naming it.
    {
        std::ofstream append(input, std::ios::app | std::ios::binary);
        append << "x";
    }
    CHECK_THROWS_WITH(replay_repair(repair_log_path(tmp / "a.pt"), tmp / "d.pt"), Catch::Contains("changed since the repair"));
    CHECK_FALSE(fs::exists(tmp / "d.pt"));
}

TEST_CASE("repair inflate on the collapsed sample run, judged by a fresh scan", "[repair][inflate]") {
    test::TempDir tmp;
    const fs::path input = kRun / "step_000350.pt";
    RepairOptions options;
    options.step.kind = StepKind::Inflate;
    options.step.inflate.zeros = 0.3;
    options.like = kRun / "step_000050.pt";
    const RepairLog log = repair_checkpoint(input, tmp / "inflated.pt", options);
    REQUIRE(log.tensors.size() == 6);  // the default selection: the collapsed MLP matrices
    CHECK(log.verdict_before == analysis::Verdict::Collapsed);

    const io::Checkpoint before = io::Checkpoint::open(input), after = io::Checkpoint::open(tmp / "inflated.pt");
    const analysis::ScanReport rescan = analysis::scan_checkpoint(after);
    std::vector<std::string> changed;
    for (const auto& t : log.tensors) {
        INFO(t.name);
        CHECK(t.name.find(".mlp.") != std::string::npos);
        REQUIRE(t.inflate.has_value());
        CHECK(t.inflate->reached);
        CHECK(t.scale_source.find("like step_000050.pt") != std::string::npos);
        for (const auto& s : rescan.tensors)
            if (s.name == t.name) {
                CHECK(s.ternary.zero <= 0.3);
                CHECK(s.ternary.zero > 0.25);
                CHECK(s.ternary.zero == t.after.zero);
            }
        // Outside the dead zone nothing moved.
        const auto a = values(before, *before.find_tensor(t.name)), b = values(after, *after.find_tensor(t.name));
        for (std::size_t i = 0; i < a.size(); ++i)
            if (std::abs(a[i]) >= t.inflate->dead_zone) REQUIRE(a[i] == b[i]);
        changed.push_back(t.name);
    }
    CHECK(check_carried_over(input, tmp / "inflated.pt", changed) >= 18);
    for (const auto& l : log.layers)
        if (analysis::role_is_mlp(l.role)) CHECK(l.after.zero <= 0.3);
}

TEST_CASE("repair align on the collapsed sample run moves the distribution to the reference's lattice", "[repair][align]") {
    test::TempDir tmp;
    RepairOptions options;
    options.step.kind = StepKind::Align;
    options.like = kRun / "step_000050.pt";
    const RepairLog log = repair_checkpoint(kRun / "step_000350.pt", tmp / "aligned.pt", options);
    REQUIRE(log.tensors.size() == 6);
    const analysis::ScanReport rescan = analysis::scan_checkpoint(io::Checkpoint::open(tmp / "aligned.pt"));
    for (const auto& t : log.tensors) {
        INFO(t.name);
        REQUIRE(t.align.has_value());
        CHECK(t.align->w2_after < 0.05 * t.align->w2_before);
        CHECK(t.align->mass_error < 0.02);
        for (const auto& s : rescan.tensors)
            if (s.name == t.name) {
                CHECK(s.ternary.zero == Approx(t.align->target.zero).margin(0.02));
                CHECK(s.absmean > 5 * t.before.absmean);  // the scale came back from the reference
            }
    }
    // With the scale restored and the codes spread again, the MLPs are no longer collapsed.
    for (const auto& l : log.layers)
        if (analysis::role_is_mlp(l.role)) CHECK(l.after.verdict != analysis::Verdict::Collapsed);
}

TEST_CASE("repair svd on the collapsed run, safetensors in and out, and the refusals", "[repair]") {
    test::TempDir tmp;
    RepairOptions options;
    options.step.kind = StepKind::Svd;
    options.step.svd.rule = RankRule::Energy;
    options.step.svd.energy = 0.5;
    const RepairLog log = repair_checkpoint(kRun / "step_000350.pt", tmp / "svd.pt", options);
    CHECK(log.tensors.size() == 6);
    for (const auto& t : log.tensors) CHECK(t.svd->energy_kept >= 0.5);

    // Never the input, never a missing selection, never a packed-only format.
    CHECK_THROWS_AS(repair_checkpoint(kRun / "step_000350.pt", kRun / "step_000350.pt", options), Error);
    options.selection.match = {"no.such.*"};
    CHECK_THROWS_WITH(repair_checkpoint(kRun / "step_000350.pt", tmp / "x.pt", options), Catch::Contains("matches no"));
    options.selection.match.clear();
    CHECK_THROWS_WITH(repair_checkpoint(kRun / "step_000050.pt", tmp / "y.pt", options), Catch::Contains("no degraded or collapsed"));
    CHECK_FALSE(fs::exists(tmp / "x.pt"));

    // safetensors: same format out, everything else carried over.
    options.selection.match = {"*"};
    options.step.svd.rule = RankRule::Fixed;
    options.step.svd.rank = 1;
    const fs::path st = test::samples_dir() / "plain.safetensors";
    const RepairLog sl = repair_checkpoint(st, tmp / "out.safetensors", options);
    // The float32 embedding and the float16 / bfloat16 matrices are repaired in their own dtypes;
    // the int64 position ids are not floating point and are carried over.
    REQUIRE(sl.tensors.size() == 3);
    CHECK(sl.tensors[1].dtype == "float16");
    CHECK(sl.tensors[2].dtype == "bfloat16");
    for (const auto& t : sl.tensors) CHECK(t.changed_elements > 0);
    CHECK(io::Checkpoint::open(tmp / "out.safetensors").format() == io::Format::Safetensors);
    CHECK_THROWS_WITH(repair_checkpoint(st, tmp / "out.pt", options), Catch::Contains("name the output .safetensors"));
    std::vector<std::string> changed;
    for (const auto& t : sl.tensors) changed.push_back(t.name);
    CHECK(check_carried_over(st, tmp / "out.safetensors", changed) == 1);
}

TEST_CASE("repair pick takes the last healthy checkpoint of the run, with its reasons", "[repair][pick]") {
    test::TempDir tmp;
    PickOptions options;
    const RepairLog log = pick_checkpoint({kRun.string()}, tmp / "start.pt", options);
    const analysis::ScanReport s50 = analysis::scan_checkpoint(io::Checkpoint::open(kRun / "step_000050.pt"));
    CHECK(fs::path(log.input).filename() == "step_000050.pt");
    CHECK(s50.verdict == analysis::Verdict::Healthy);
    CHECK(hash_of(tmp / "start.pt") == hash_of(kRun / "step_000050.pt"));
    REQUIRE_FALSE(log.reasons.empty());
    CHECK(log.reasons[0].find("last healthy") != std::string::npos);
    const ReplayResult again = replay_repair(repair_log_path(tmp / "start.pt"), tmp / "again.pt");
    CHECK(again.identical);

    // No healthy checkpoint: refused, unless degraded ones are allowed.
    const std::vector<std::string> late = {(kRun / "step_000100.pt").string(), (kRun / "step_000150.pt").string(),
                                           (kRun / "step_000200.pt").string()};
    CHECK_THROWS_WITH(pick_checkpoint(late, tmp / "none.pt", options), Catch::Contains("no healthy checkpoint"));
    options.allow_degraded = true;
    const RepairLog degraded = pick_checkpoint(late, tmp / "degraded.pt", options);
    CHECK(fs::path(degraded.input).filename() == "step_000150.pt");
}

TEST_CASE("preview_repair gives the same figures as the written repair", "[repair][preview]") {
    test::TempDir tmp;
    RepairOptions options;
    options.step.kind = StepKind::Inflate;
    options.like = kRun / "step_000050.pt";
    const fs::path input = kRun / "step_000350.pt";
    const RepairLog log = repair_checkpoint(input, tmp / "inflated.pt", options);
    const io::Checkpoint c = io::Checkpoint::open(input);
    const analysis::ScanReport scan = analysis::scan_checkpoint(c);
    const TensorPreview p = preview_repair(c, scan, "layers.1.mlp.up_proj.weight", options);
    for (const auto& t : log.tensors)
        if (t.name == "layers.1.mlp.up_proj.weight") {
            CHECK(p.repair.after.std == t.after.std);
            CHECK(p.repair.after.zero == t.after.zero);
            CHECK(p.repair.inflate->moved == t.inflate->moved);
        }
    CHECK(p.before_stats.ternary.zero > 0.9);
    CHECK(p.after_stats.values.counts.size() == 64);
    CHECK_THROWS_WITH(preview_repair(c, scan, "norm.weight", options), Catch::Contains("not a plain floating-point matrix"));
}
