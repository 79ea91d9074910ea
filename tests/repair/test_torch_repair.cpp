// Repaired checkpoints seen by real PyTorch: they load with weights_only=True, every tensor the
// log does not name is bit-identical to the input's (optimizer state included), and the SVD step
// equals torch.linalg.svd's truncation at the same rank.
#include <catch2/catch.hpp>

#include "bitfsck/repair/repair.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::repair;
namespace fs = std::filesystem;

namespace {

void check_with_torch(const fs::path& input, const fs::path& output, bool require_weights_only = false) {
    const auto r = test::run_command(test::python() + " " + test::quote(test::source_dir() / "tests/scripts/check_repair_output.py") +
                                     " " + test::quote(input) + " " + test::quote(output) + " " +
                                     test::quote(repair_log_path(output)) + (require_weights_only ? " --require-weights-only" : ""));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.rfind("OK ", 0) == 0);
}

}  // namespace

TEST_CASE("torch: svd, align and inflate outputs load in PyTorch and keep everything else bit-exact", "[repair][torch]") {
    test::TempDir tmp;
    const fs::path lowrank = test::samples_dir() / "repair" / "lowrank.pt";
    const fs::path run350 = test::samples_dir() / "run" / "step_000350.pt";
    const fs::path run50 = test::samples_dir() / "run" / "step_000050.pt";

    RepairOptions svd;
    svd.step.kind = StepKind::Svd;
    svd.selection.roles = {"mlp"};
    repair_checkpoint(lowrank, tmp / "svd.pt", svd);
    check_with_torch(lowrank, tmp / "svd.pt");

    // A plain state dict (as model.state_dict() saves) loads with weights_only=True before and after.
    repair_checkpoint(test::samples_dir() / "repair" / "lowrank_clean.pt", tmp / "clean_svd.pt", svd);
    check_with_torch(test::samples_dir() / "repair" / "lowrank_clean.pt", tmp / "clean_svd.pt", true);

    svd.selection.roles = {"attn"};
    svd.step.svd.rule = RankRule::Fixed;
    svd.step.svd.rank = 40;  // above a quarter of 64: the full solver
    const RepairLog full = repair_checkpoint(lowrank, tmp / "svd_full.pt", svd);
    CHECK(full.tensors.front().svd->solver == "eigen_bdcsvd");
    check_with_torch(lowrank, tmp / "svd_full.pt");

    RepairOptions align;
    align.step.kind = StepKind::Align;
    align.like = run50;
    repair_checkpoint(run350, tmp / "align.pt", align);
    check_with_torch(run350, tmp / "align.pt");

    RepairOptions inflate;
    inflate.step.kind = StepKind::Inflate;
    inflate.drop_optimizer_state = true;
    repair_checkpoint(run350, tmp / "inflate.pt", inflate);
    check_with_torch(run350, tmp / "inflate.pt");
}
