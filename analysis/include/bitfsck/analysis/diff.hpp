#pragma once
// What changed between two checkpoints of the same model, tensor by tensor, in the terms that
// matter for a ternary model: how far the latent weights moved and how many ternary codes flipped.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/io/error.hpp"
#include "bitfsck/analysis/quantizer.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/io/checkpoint.hpp"

namespace bitfsck::analysis {

// transitions[from + 1][to + 1]: elements whose code went from `from` in A to `to` in B.
using TransitionMatrix = std::array<std::array<std::uint64_t, 3>, 3>;

struct TensorDiff {
    std::string name;
    std::vector<std::int64_t> shape;      // A's shape (B's when only in B)
    std::vector<std::int64_t> shape_b;    // B's shape when it differs from A's, else empty
    bool only_in_a = false, only_in_b = false;
    bool compared = false;                // both present, same shape, floating point
    std::string note;                     // why not compared ("shape [4, 8] vs [8, 4]", ...), or B's name when it differs

    std::uint64_t count = 0;              // elements compared
    std::uint64_t non_finite = 0;         // element pairs skipped because either side is NaN/Inf
    double norm_a = 0, norm_b = 0, norm_diff = 0;  // L2 norms over the finite pairs
    double rel_l2 = 0;                    // norm_diff / norm_a (inf when A is all zero and B is not)
    double absmean_a = 0, absmean_b = 0;  // gamma of each side
    double scale_a = 0, scale_b = 0;      // effective quantizer scale of each side
    TransitionMatrix transitions{};       // each side quantized with its own scale
    std::uint64_t flips = 0;              // off-diagonal transitions
    double flip_rate = 0;                 // flips / count
    std::int64_t rows = 0;                // matrix view rows (shape[0]); 0 for vectors and scalars
    std::int64_t dead_rows_a = 0, dead_rows_b = 0;  // rows whose codes are all zero
    std::int64_t new_dead_rows = 0;       // dead in B but not in A
};

struct DiffTotals {
    std::size_t tensors_compared = 0, only_in_a = 0, only_in_b = 0, not_compared = 0;
    std::uint64_t count = 0, flips = 0, non_finite = 0;
    double flip_rate = 0;
    double rel_l2 = 0;                    // over all compared tensors together
    TransitionMatrix transitions{};
    std::int64_t new_dead_rows = 0;
};

struct CheckpointDiff {
    std::string file_a, file_b;
    Quantizer quantizer = Quantizer::BitNet;
    std::vector<TensorDiff> tensors;      // A's state-dict order, then tensors only in B
    DiffTotals totals;
};

// Compares two tensors of equal shape, streaming both in blocks: a first pass for each side's
// absmean (the quantizer scale needs it), a second for norms, codes and dead rows.
TensorDiff diff_tensors(const std::string& name, const io::TensorData& a, const io::TensorData& b, Quantizer q);

// Every floating-point state-dict tensor matched by name (or by what the name means). Tensors are
// spread over `threads` workers (0: every core); progress counts bytes of both files, and its
// false return stops the diff (Cancelled).
CheckpointDiff diff_checkpoints(const io::Checkpoint& a, const io::Checkpoint& b, Quantizer q = Quantizer::BitNet,
                                unsigned threads = 0, const ProgressCallback& progress = {}, const TensorSelection& selection = {});

}  // namespace bitfsck::analysis
