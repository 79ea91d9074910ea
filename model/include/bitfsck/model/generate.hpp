#pragma once
// `bitfsck generate`: decoding with the KV cache, and a degeneration check on what comes out.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bitfsck/io/progress.hpp"
#include "bitfsck/model/model.hpp"

namespace bitfsck::model {

struct DegenerationOptions {
    std::int64_t min_tokens = 16;      // shorter outputs are not judged for repetition
    std::int64_t max_run = 8;          // the same token this many times in a row
    double max_token_share = 0.5;      // one token making up more than this share of the output
    std::int64_t max_ngram = 8;        // loops of period 1..max_ngram
    std::int64_t min_loop_repeats = 3; // ... repeated at least this often ...
    double min_loop_share = 0.5;       // ... covering at least this share of the output (at its end)
    double constant_logit_range = 1e-6;// max − min of a step's logits below this: all-same logits
};

// What one decoding step's logits looked like.
struct StepStats {
    std::int64_t non_finite = 0;  // NaN or Inf entries
    double range = 0;             // max − min over the finite entries
};
StepStats step_stats(std::span<const float> logits);

struct DegenerationReport {
    bool degenerate = false;   // repetition
    bool broken = false;       // NaN/Inf or all-same logits: the model does not compute anything usable
    std::vector<std::string> reasons;
    std::int64_t longest_run = 0, longest_run_token = -1;
    double top_token_share = 0;
    std::int64_t top_token = -1;
    std::int64_t loop_period = 0, loop_length = 0;  // the longest periodic suffix found (period <= max_ngram)
    std::int64_t non_finite_steps = 0, constant_steps = 0;
};
DegenerationReport check_degeneration(std::span<const std::int64_t> generated, std::span<const StepStats> steps,
                                      const DegenerationOptions& options = {});

struct GenerateOptions {
    LoadOptions load;
    std::string prompt;
    std::optional<std::filesystem::path> tokenizer;  // SentencePiece tokenizer.model
    std::int64_t max_new_tokens = 64;
    double temperature = 0;  // 0: greedy
    std::int64_t top_k = 0;  // 0: no limit
    double top_p = 1.0;
    std::uint64_t seed = 0;
    bool stop_at_eos = true;
    std::optional<bool> bos;  // unset: prepend BOS with a SentencePiece tokenizer when the model has one
    DegenerationOptions degeneration;
    // New tokens done of --max-new-tokens; a false return stops decoding with Cancelled.
    ProgressCallback progress;
};

struct GenerateResult {
    std::string file;
    ModelConfig config;
    std::string device;
    std::string tokenizer;  // "sentencepiece", "bytes", "ids"
    std::vector<std::int64_t> prompt_ids, generated;
    std::string prompt_text, text;  // text: the generated part, decoded
    bool greedy = true;
    double temperature = 0, top_p = 1;
    std::int64_t top_k = 0;
    std::uint64_t seed = 0;
    bool stopped_at_eos = false;
    DegenerationReport degeneration;
    double seconds = 0, tokens_per_second = 0;  // decoding steps only
};

// Picks the next token: argmax for temperature 0, else softmax(logits/T) limited to top_k and the
// top_p nucleus, drawn from rng with a portable draw. Non-finite logits never win.
std::int64_t sample_token(std::span<const float> logits, double temperature, std::int64_t top_k, double top_p, std::mt19937_64& rng);

GenerateResult run_generate(const io::Checkpoint& checkpoint, const GenerateOptions& options);
GenerateResult run_generate(const Model& model, const std::string& file, const GenerateOptions& options);
nlohmann::ordered_json to_json(const GenerateResult& result);

}  // namespace bitfsck::model
