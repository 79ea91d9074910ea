#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace bitfsck::analysis {

// Every number a verdict depends on, in one place. Written into every report so that a
// verdict can be re-checked, and settable from a JSON file and from the command line.
// Defaults: absmean quantization of Gaussian weights gives ~31% ternary zeros (Laplace ~39%);
// healthy MLP std in 125M-class models is 0.01-0.05; collapse shows as std or gamma under 1e-3,
// or orders of magnitude below the same role in other layers, and/or zeros above 80%.
struct Thresholds {
    double collapsed_std = 1e-3;          // std (or gamma) below this: collapsed
    double collapsed_zero_frac = 0.80;    // ternary zeros above this: collapsed
    double degraded_zero_frac = 0.55;     // ternary zeros above this: degraded
    double collapsed_role_ratio = 1e-2;   // std below this fraction of the role's median across layers: collapsed
    double degraded_role_ratio = 0.2;     // ... below this fraction: degraded
    double dead_rows_degraded = 0.10;     // share of dead output rows: degraded
    double dead_rows_collapsed = 0.50;    // ... collapsed
    std::uint64_t min_elements = 256;     // tensors smaller than this are not judged (biases, scalars)
};

nlohmann::ordered_json thresholds_to_json(const Thresholds& t);
// Overrides the fields present in j; unknown keys are an error naming the key.
Thresholds thresholds_from_json(const nlohmann::json& j, Thresholds base = {});

}  // namespace bitfsck::analysis
