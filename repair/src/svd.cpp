#include "bitfsck/repair/svd.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <Eigen/Dense>
#include <Eigen/SVD>
#include <Spectra/contrib/PartialSVDSolver.h>

#include "bitfsck/analysis/median.hpp"
#include "bitfsck/io/error.hpp"

namespace bitfsck::repair {
namespace {

using RowMajor = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Eigen::Map<const RowMajor> view(const Matrix& m) { return {m.values.data(), m.rows, m.cols}; }
Eigen::Map<RowMajor> view(Matrix& m) { return {m.values.data(), m.rows, m.cols}; }

}  // namespace

double relative_frobenius_change(std::span<const double> before, std::span<const double> after) {
    long double diff = 0, base = 0;
    for (std::size_t i = 0; i < before.size() && i < after.size(); ++i) {
        const long double d = static_cast<long double>(after[i]) - before[i];
        diff += d * d;
        base += static_cast<long double>(before[i]) * before[i];
    }
    if (base == 0) return diff == 0 ? 0.0 : INFINITY;
    return static_cast<double>(std::sqrt(diff / base));
}

std::string_view rank_rule_name(RankRule r) {
    switch (r) {
        case RankRule::Fixed: return "rank";
        case RankRule::Energy: return "energy";
        case RankRule::GavishDonoho: return "gavish_donoho";
        case RankRule::MarchenkoPastur: return "marchenko_pastur";
    }
    return "?";
}

std::optional<RankRule> rank_rule_from_name(std::string_view name) {
    for (RankRule r : {RankRule::Fixed, RankRule::Energy, RankRule::GavishDonoho, RankRule::MarchenkoPastur})
        if (rank_rule_name(r) == name) return r;
    return std::nullopt;
}

std::string_view svd_solver_name(SvdSolver s) {
    switch (s) {
        case SvdSolver::Auto: return "auto";
        case SvdSolver::Partial: return "partial";
        case SvdSolver::Full: return "full";
    }
    return "?";
}

std::optional<SvdSolver> svd_solver_from_name(std::string_view name) {
    for (SvdSolver s : {SvdSolver::Auto, SvdSolver::Partial, SvdSolver::Full})
        if (svd_solver_name(s) == name) return s;
    return std::nullopt;
}

std::vector<double> singular_values(const Matrix& m) {
    const auto a = view(m);
    const bool wide = m.rows <= m.cols;
    const Eigen::Index p = wide ? m.rows : m.cols;
    Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(p, p);
    if (wide)
        gram.selfadjointView<Eigen::Lower>().rankUpdate(a);
    else
        gram.selfadjointView<Eigen::Lower>().rankUpdate(a.transpose());
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram, Eigen::EigenvaluesOnly);
    if (eig.info() != Eigen::Success) throw Error("singular values: the eigensolver did not converge");
    std::vector<double> sigma(static_cast<std::size_t>(p));
    for (Eigen::Index i = 0; i < p; ++i) sigma[static_cast<std::size_t>(i)] = std::sqrt(std::max(0.0, eig.eigenvalues()(p - 1 - i)));
    return sigma;
}

double gavish_donoho_omega(double beta) {
    return 0.56 * beta * beta * beta - 0.95 * beta * beta + 1.82 * beta + 1.43;
}

double marchenko_pastur_median(double beta) {
    // Integrate the density on [a, b] with the substitution x = a + (b - a) (1 - cos t) / 2, which
    // removes the square-root endpoints, then invert the cumulative by bisection.
    const double a = (1 - std::sqrt(beta)) * (1 - std::sqrt(beta));
    const double b = (1 + std::sqrt(beta)) * (1 + std::sqrt(beta));
    auto cdf = [&](double x) {
        if (x <= a) return 0.0;
        if (x >= b) return 1.0;
        const double t_end = std::acos(1 - 2 * (x - a) / (b - a));
        const int n = 2000;
        double sum = 0;
        for (int i = 0; i < n; ++i) {
            const double t = (i + 0.5) * t_end / n;
            const double xi = a + (b - a) * (1 - std::cos(t)) / 2;
            const double dx = (b - a) * std::sin(t) / 2;
            const double density = std::sqrt(std::max(0.0, (b - xi) * (xi - a))) / (2 * M_PI * beta * xi);
            sum += density * dx;
        }
        return sum * t_end / n;
    };
    double lo = a, hi = b;
    for (int i = 0; i < 60; ++i) {
        const double mid = 0.5 * (lo + hi);
        (cdf(mid) < 0.5 ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
}

std::int64_t choose_rank(const std::vector<double>& sigma, std::int64_t rows, std::int64_t cols,
                         const SvdParams& params, SvdOutcome& outcome) {
    const auto p = static_cast<std::int64_t>(sigma.size());
    const double m = static_cast<double>(std::min(rows, cols)), n = static_cast<double>(std::max(rows, cols));
    const double beta = m / n;
    auto count_above = [&](double tau) {
        return static_cast<std::int64_t>(std::count_if(sigma.begin(), sigma.end(), [&](double s) { return s > tau; }));
    };
    switch (params.rule) {
        case RankRule::Fixed:
            return std::clamp<std::int64_t>(params.rank, 0, p);
        case RankRule::Energy: {
            long double total = 0;
            for (double s : sigma) total += static_cast<long double>(s) * s;
            if (total == 0) return 0;
            long double kept = 0;
            for (std::int64_t k = 0; k < p; ++k) {
                kept += static_cast<long double>(sigma[k]) * sigma[k];
                if (kept / total >= params.energy - 1e-12) return k + 1;
            }
            return p;
        }
        case RankRule::GavishDonoho: {
            outcome.threshold = gavish_donoho_omega(beta) * analysis::median(sigma);
            return count_above(outcome.threshold);
        }
        case RankRule::MarchenkoPastur: {
            // A noise-only n x m matrix with entry variance s^2 has sigma_i^2 / n distributed as
            // MP(beta) s^2: its median singular value is s sqrt(n mu_beta), its largest about
            // s (sqrt(m) + sqrt(n)). The noise level comes from the median, robust to the signal.
            outcome.noise_sigma = analysis::median(sigma) / std::sqrt(n * marchenko_pastur_median(beta));
            outcome.threshold = outcome.noise_sigma * (std::sqrt(m) + std::sqrt(n));
            return count_above(outcome.threshold);
        }
    }
    return p;
}

SvdOutcome svd_denoise(Matrix& m, const SvdParams& params) {
    SvdOutcome out;
    out.rule = std::string(rank_rule_name(params.rule));
    out.max_rank = std::min(m.rows, m.cols);
    if (out.max_rank == 0) return out;

    long double total = 0;
    for (double v : m.values) total += static_cast<long double>(v) * v;
    if (total == 0) {  // nothing to denoise, and Lanczos cannot start from a zero operator
        out.solver = "none";
        return out;
    }

    std::vector<double> sigma;
    std::int64_t k = 0;
    if (params.rule == RankRule::Fixed) {
        k = std::clamp<std::int64_t>(params.rank, 0, out.max_rank);
    } else {
        sigma = singular_values(m);
        k = choose_rank(sigma, m.rows, m.cols, params, out);
    }
    if (k == 0) {
        // A rank-0 "denoising" would erase the layer; keep the leading triplet and say so.
        k = 1;
        out.rank_floored = true;
    }
    out.rank = k;

    const bool partial = params.solver == SvdSolver::Partial ||
                         (params.solver == SvdSolver::Auto && k < out.max_rank &&
                          static_cast<double>(k) <= params.partial_fraction * static_cast<double>(out.max_rank));
    auto a = view(m);
    Eigen::MatrixXd u, v;
    Eigen::VectorXd s;
    if (partial && k < out.max_rank) {
        // Auto falls back to the full SVD below when Lanczos does not converge.
        const Eigen::MatrixXd dense = a;
        const Eigen::Index ncv = std::min<Eigen::Index>(out.max_rank, std::max<Eigen::Index>(2 * k + 1, k + 20));
        Spectra::PartialSVDSolver<Eigen::MatrixXd> solver(dense, static_cast<Eigen::Index>(k), ncv);
        Eigen::Index converged = 0;
        try {
            converged = solver.compute(1000, 1e-10);
        } catch (const std::exception&) {
            converged = 0;  // degenerate spectra (repeated singular values) can defeat Lanczos
        }
        if (converged >= k) {
            s = solver.singular_values();
            u = solver.matrix_U(k);
            v = solver.matrix_V(k);
            out.solver = "spectra_partial";
        } else if (params.solver == SvdSolver::Partial) {
            throw Error("svd: the partial solver converged on " + std::to_string(converged) + " of " + std::to_string(k) +
                        " singular triplets; use --solver full");
        }
    }
    if (out.solver.empty()) {
        Eigen::BDCSVD<Eigen::MatrixXd> svd(Eigen::MatrixXd(a), Eigen::ComputeThinU | Eigen::ComputeThinV);
        if (svd.info() != Eigen::Success) throw Error("svd: Eigen's BDCSVD did not converge");
        s = svd.singularValues().head(k);
        u = svd.matrixU().leftCols(k);
        v = svd.matrixV().leftCols(k);
        out.solver = "eigen_bdcsvd";
    }
    a.noalias() = u * s.asDiagonal() * v.transpose();

    long double kept = 0;
    for (Eigen::Index i = 0; i < s.size(); ++i) kept += static_cast<long double>(s(i)) * s(i);
    out.energy_kept = total > 0 ? static_cast<double>(kept / total) : 0.0;
    if (sigma.empty()) sigma.assign(s.data(), s.data() + s.size());
    out.top_singular_values.assign(sigma.begin(), sigma.begin() + std::min<std::ptrdiff_t>(16, static_cast<std::ptrdiff_t>(sigma.size())));
    return out;
}

}  // namespace bitfsck::repair
