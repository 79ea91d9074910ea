#pragma once
// Induction-head probe: per layer and head, how attention behaves on sequences where a token has
// been seen before. Metrics, over eligible query positions t (t's token occurred earlier, at its
// most recent earlier position j, with j + 1 < t):
//   ipmr            fraction of them whose argmax attention falls exactly on j + 1
//                   (the token that followed the previous occurrence: "induction prefix match rate")
//   induction       mean attention mass on j + 1
//   duplicate_token mean attention mass on j (same positions)
//   previous_token  mean attention mass on t - 1, over every t >= 1
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bitfsck/io/progress.hpp"
#include "bitfsck/model/model.hpp"
#include "bitfsck/model/tokens.hpp"

namespace bitfsck::model {

inline constexpr int kInductionSchemaVersion = 1;

enum class Probe : std::uint8_t { RepeatedRandom, Tokens };
std::string_view probe_name(Probe p);  // "repeated_random", "tokens"

struct InductionOptions {
    LoadOptions load;
    // Probe (a): `batch` rows of BOS (if the model has one) + a random sequence of `seq_len` tokens
    // repeated twice, drawn with `seed`.
    // Probe (b), when tokens_file is set: `batches` consecutive windows of `seq_len` tokens from the
    // start of the file, no BOS, run `batch` windows per forward pass.
    std::optional<std::filesystem::path> tokens_file;
    TokenDType token_dtype = TokenDType::U16;
    std::int64_t batch = 8;
    std::int64_t seq_len = 64;
    std::int64_t batches = 8;
    std::uint64_t seed = 1234;
    std::optional<bool> bos;  // unset: prepend BOS when the config names one (repeated-random probe only)
    double specialist_threshold = 0.05;  // IPMR at or above this makes a head a specialist
    int top = 5;
    // Rows done of all rows (unit: windows); a false return stops the probe with Cancelled.
    ProgressCallback progress;
};

struct HeadMetrics {
    double ipmr = 0, induction = 0, duplicate_token = 0, previous_token = 0;
};

struct HeadRef {
    std::int64_t layer = 0, head = 0;
    HeadMetrics metrics;
};

struct InductionReport {
    std::string file;
    ModelConfig config;
    std::string device;
    Probe probe = Probe::RepeatedRandom;
    // Probe parameters as run.
    std::int64_t batch = 0, seq_len = 0, windows = 0, sequence_length = 0;  // sequence_length: tokens per row fed
    std::uint64_t seed = 0;
    bool bos = false;
    std::optional<std::int64_t> bos_token_id;
    std::string tokens_file;
    std::string token_dtype;
    // Counts behind the means (the same for every head of a probe).
    std::int64_t eligible_positions = 0, previous_positions = 0;
    std::int64_t layers = 0, heads = 0;
    std::vector<std::vector<HeadMetrics>> metrics;  // [layer][head]
    std::vector<HeadRef> top;                       // by IPMR, then induction score
    double specialist_threshold = 0.05;
    std::int64_t specialists = 0;
    double seconds = 0;
    std::int64_t tokens = 0;
    double tokens_per_second = 0;
};

// Accumulates the metrics over rows of tokens and their attention probabilities; no LibTorch.
class InductionAccumulator {
public:
    InductionAccumulator(std::int64_t layers, std::int64_t heads);
    // One row: tokens[seq] and probs[heads·seq·seq] of one layer (probs[(h·seq + t)·seq + k]).
    void add(std::int64_t layer, std::span<const std::int64_t> tokens, const float* probs, std::int64_t heads,
             std::int64_t seq);
    // Per-row position counts are the same for every layer; count them once per row.
    void count_row(std::span<const std::int64_t> tokens);
    std::vector<std::vector<HeadMetrics>> result() const;
    std::int64_t eligible() const { return eligible_; }
    std::int64_t previous() const { return previous_; }

private:
    struct Sums {
        double hits = 0, induction = 0, duplicate = 0, previous = 0;
    };
    std::int64_t layers_, heads_;
    std::vector<Sums> sums_;
    std::int64_t eligible_ = 0, previous_ = 0;
};

// For each position t, the most recent earlier position of the same token (-1 when none).
std::vector<std::int64_t> previous_occurrence(std::span<const std::int64_t> tokens);

// The repeated-random probe's rows: [batch, (bos ? 1 : 0) + 2·seq_len], uniform over the vocabulary
// minus the BOS/EOS ids, from a fixed-seed mt19937_64 (the same on every platform).
std::vector<std::int64_t> repeated_random_tokens(std::int64_t batch, std::int64_t seq_len, std::int64_t vocab,
                                                 std::optional<std::int64_t> bos, std::optional<std::int64_t> eos,
                                                 std::uint64_t seed);

InductionReport run_induction(const io::Checkpoint& checkpoint, const InductionOptions& options);
InductionReport run_induction(const Model& model, const std::string& file, const InductionOptions& options);

// Ranks heads and counts specialists from report.metrics (called by run_induction).
void rank_heads(InductionReport& report, int top);

// The --json / sidecar document (schema docs/induction.md).
nlohmann::ordered_json to_json(const InductionReport& report);

// Writes the matrices into an HDF5 file (see docs/induction.md for the layout), atomically.
void write_induction_h5(const std::filesystem::path& path, const std::vector<InductionReport>& reports);

}  // namespace bitfsck::model
