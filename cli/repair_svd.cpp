// bitfsck repair svd: replace matrices by a low-rank reconstruction (SVD denoising).
#include "repair_common.hpp"
#include "subcommands.hpp"
#include "validators.hpp"

namespace bitfsck::cli {

void add_repair_svd_subcommand(CLI::App& parent) {
    auto flags = std::make_shared<RepairFlags>();
    auto params = std::make_shared<repair::SvdParams>();
    auto rank = std::make_shared<std::int64_t>(0);
    auto energy = std::make_shared<double>(0);
    auto mp = std::make_shared<bool>(false);
    auto gd = std::make_shared<bool>(false);
    auto solver = std::make_shared<std::string>("auto");
    auto* sub = parent.add_subcommand("svd", "SVD denoising: keep the leading singular triplets of each selected matrix");
    add_repair_flags(*sub, flags);
    auto* o_rank = sub->add_option("--rank", *rank, "Keep exactly K singular values")->check(positive());
    auto* o_energy = sub->add_option("--energy", *energy, "Keep the smallest rank holding this share of sum(sigma^2), e.g. 0.9")
                         ->check(CLI::Range(0.0, 1.0));
    auto* o_gd = sub->add_flag("--gavish-donoho", *gd, "Optimal hard threshold for unknown noise: omega(beta) * median(sigma) (the default)");
    auto* o_mp = sub->add_flag("--mp", *mp, "Keep singular values above the Marchenko-Pastur bulk edge (noise from the median)");
    o_rank->excludes(o_energy)->excludes(o_gd)->excludes(o_mp);
    o_energy->excludes(o_gd)->excludes(o_mp);
    o_gd->excludes(o_mp);
    sub->add_option("--solver", *solver, "auto (partial Lanczos solver when the rank is small, else full), partial, full")
        ->check(CLI::IsMember({"auto", "partial", "full"}))
        ->capture_default_str();
    sub->footer(repair_footer("  bitfsck repair svd step_4000.pt -o svd.pt\n"
                              "  bitfsck repair svd step_4000.pt -o svd.pt --rank 16 --roles mlp --layers 6-11\n"
                              "  bitfsck repair svd step_4000.pt -o svd.pt --energy 0.9 --match 'layers.*.mlp.down_proj.weight'"));
    sub->callback([=] {
        repair::StepSpec step;
        step.kind = repair::StepKind::Svd;
        step.svd = *params;
        if (*rank > 0) {
            step.svd.rule = repair::RankRule::Fixed;
            step.svd.rank = *rank;
        } else if (*energy > 0) {
            step.svd.rule = repair::RankRule::Energy;
            step.svd.energy = *energy;
        } else if (*mp) {
            step.svd.rule = repair::RankRule::MarchenkoPastur;
        }
        step.svd.solver = *repair::svd_solver_from_name(*solver);
        run_repair_step(*flags, step);
    });
}

}  // namespace bitfsck::cli
