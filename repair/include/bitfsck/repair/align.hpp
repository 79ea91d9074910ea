#pragma once
// Wasserstein alignment of a tensor's weights to the ternary lattice. The target is a three-peak
// distribution: Gaussians of width sigma = width * S at -S, 0 and +S with masses (neg, zero, pos).
// In one dimension the optimal transport map is monotone: the weight of rank r goes to the target
// quantile at (r + 1/2) / n, so the order of the weights is preserved. A strength t moves each
// weight part of the way (displacement interpolation): w <- (1 - t) w + t T(w).
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "bitfsck/analysis/quantizer.hpp"

namespace bitfsck::repair {

struct LatticeMasses {
    double neg = 0, zero = 0, pos = 0;
};

// What the absmean quantizer makes of a healthy Gaussian layer: P(|x| < E|x| / 2) zeros
// (erf(1 / (2 sqrt(pi))) ~ 31.0%), the rest split evenly.
LatticeMasses healthy_gaussian_masses();

struct ThreePeakTarget {
    LatticeMasses masses;
    double scale = 1;   // S
    double width = 0;   // sigma / S; 0: the bare lattice {-S, 0, +S}
};

// The target's quantile function at u in (0, 1).
double three_peak_quantile(const ThreePeakTarget& target, double u);
// The quantile at S = 1 of the symmetric target with zero mass p0 and peaks of width sigma/S:
// what fine-tuning's Wasserstein regularizer scales by each tensor's S.
double unit_three_peak_quantile(double zero_mass, double width, double u);

struct AlignParams {
    std::optional<LatticeMasses> masses;  // unset: the caller's default (reference or healthy Gaussian)
    double strength = 1.0;                // t in [0, 1]
    double width = 0.1;                   // sigma / S
    std::optional<double> scale;          // fixed S: no solving
};

struct AlignOutcome {
    LatticeMasses target;                  // masses aimed at
    LatticeMasses achieved;                // ternary fractions of the result under the quantizer
    double scale = 0;                      // S used
    double scale_guess = 0;                // where the search for S started
    bool scale_solved = false;             // S was searched for (not fixed by the caller)
    int evaluations = 0;                   // quantizer evaluations spent on S
    double mass_error = 0;                 // max |achieved - target| over the three masses
    double strength = 0, width = 0;
    double w2_before = 0, w2_after = 0;    // W2 to the target's quantiles, before and after
};

// Moves `w` (finite values) towards the target in place. S is `params.scale` when set; otherwise
// it is searched around scale_guess so that `quantizer` applied to the result gives the target
// zero mass (bisection on log S between the nearest bracketing points of a grid spanning 1e-3..1e3
// times the guess; without a bracket, the grid point closest to the target). Throws bitfsck::Error
// for a strength outside [0, 1], masses that are negative or do not sum to 1, or a non-finite weight.
AlignOutcome align_to_lattice(std::span<double> w, const LatticeMasses& masses, const AlignParams& params,
                              double scale_guess, analysis::Quantizer quantizer);

// Ternary fractions of `w` under the quantizer (the same rule as analysis/, half to even).
LatticeMasses ternary_masses(std::span<const double> w, analysis::Quantizer quantizer);

}  // namespace bitfsck::repair
