#pragma once
// SVD denoising: replace a matrix by its rank-k reconstruction U_k Σ_k V_kᵀ, with k chosen by a
// rule over the singular values. The spectrum comes from the eigenvalues of the smaller Gram
// matrix (values only, cheap); the top-k triplets from Spectra's Lanczos solver when k is small
// against min(m, n), else from Eigen's divide-and-conquer SVD.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bitfsck/repair/matrix.hpp"

namespace bitfsck::repair {

enum class RankRule { Fixed, Energy, GavishDonoho, MarchenkoPastur };
std::string_view rank_rule_name(RankRule r);  // "rank", "energy", "gavish_donoho", "marchenko_pastur"
std::optional<RankRule> rank_rule_from_name(std::string_view name);

enum class SvdSolver { Auto, Partial, Full };
std::string_view svd_solver_name(SvdSolver s);  // "auto", "partial", "full"
std::optional<SvdSolver> svd_solver_from_name(std::string_view name);

struct SvdParams {
    RankRule rule = RankRule::GavishDonoho;
    std::int64_t rank = 0;      // RankRule::Fixed
    double energy = 0.9;        // RankRule::Energy: share of sum(sigma^2) to keep
    SvdSolver solver = SvdSolver::Auto;
    // Auto uses the partial solver when k <= partial_fraction * min(m, n).
    double partial_fraction = 0.25;
};

struct SvdOutcome {
    std::string rule;
    std::int64_t rank = 0;        // kept
    std::int64_t max_rank = 0;    // min(m, n)
    double threshold = 0;         // singular values above it were kept (rules with a threshold)
    double noise_sigma = 0;       // per-entry noise estimated (Marchenko-Pastur rule)
    double energy_kept = 0;       // sum of kept sigma^2 / ||W||_F^2
    std::string solver;           // "spectra_partial" or "eigen_bdcsvd"
    bool rank_floored = false;    // the rule kept nothing; one triplet was kept instead
    std::vector<double> top_singular_values;  // up to 16, descending
};

// All singular values of m, descending (from the Gram matrix's eigenvalues: values below about
// sqrt(machine epsilon) * sigma_max are not resolved, which no rank rule depends on).
std::vector<double> singular_values(const Matrix& m);

// omega(beta) ~ 0.56 beta^3 - 0.95 beta^2 + 1.82 beta + 1.43 (Gavish & Donoho 2014, unknown noise).
double gavish_donoho_omega(double beta);
// Median of the Marchenko-Pastur distribution with aspect ratio beta in (0, 1] and unit variance.
double marchenko_pastur_median(double beta);

// The rank the rule keeps for a rows x cols matrix with singular values `sigma` (descending);
// sets outcome.threshold / noise_sigma where the rule has them. Never below 0.
std::int64_t choose_rank(const std::vector<double>& sigma, std::int64_t rows, std::int64_t cols,
                         const SvdParams& params, SvdOutcome& outcome);

// Replaces m by its rank-k reconstruction. Throws bitfsck::Error when a solver fails to converge.
SvdOutcome svd_denoise(Matrix& m, const SvdParams& params);

}  // namespace bitfsck::repair
