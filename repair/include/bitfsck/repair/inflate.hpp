#pragma once
// Inflation: push weights out of the quantizer's dead zone. Weights with |w| < tau * g (g the
// effective absmean scale) are the ones the quantizer snaps to 0; the largest of them move to
// +-target until the ternary zero fraction of the result reaches the requested one. Weights
// outside the dead zone are never touched.
#include <cstdint>
#include <optional>
#include <span>

#include "bitfsck/analysis/quantizer.hpp"

namespace bitfsck::repair {

struct InflateParams {
    double tau = 0.5;                 // dead zone: |w| < tau * g (0.5: exactly the quantizer's zeros)
    double zeros = 0.3;               // ternary zero fraction to reach
    std::optional<double> target;     // magnitude moved weights get; unset: the caller's default
    std::uint64_t seed = 0;           // signs of exact zeros without a reference sign
};

struct InflateOutcome {
    double gamma_before = 0;          // effective scale g of the input
    double dead_zone = 0;             // tau * g
    double target = 0;
    std::uint64_t in_dead_zone = 0;
    std::uint64_t moved = 0;
    std::uint64_t sign_from_weight = 0, sign_from_reference = 0, sign_random = 0;
    double zeros_before = 0, zeros_after = 0, zeros_requested = 0;
    bool reached = false;             // zeros_after <= zeros_requested
};

// In place. `reference` (empty, or one value per weight) gives the sign of weights that are
// exactly 0; where it is empty or 0 too, the sign comes from a SplitMix64 stream seeded with
// params.seed (the same on every platform). Throws bitfsck::Error for bad parameters.
InflateOutcome inflate_dead_zone(std::span<double> w, const InflateParams& params, double target,
                                 std::span<const double> reference, analysis::Quantizer quantizer);

}  // namespace bitfsck::repair
