#pragma once
// `bitfsck perplexity`: mean next-token loss of a model on real tokens.
#include <cstdint>
#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "bitfsck/io/progress.hpp"
#include "bitfsck/model/model.hpp"
#include "bitfsck/model/tokens.hpp"

namespace bitfsck::model {

struct PerplexityOptions {
    LoadOptions load;
    std::filesystem::path tokens_file;
    TokenDType token_dtype = TokenDType::U16;
    std::int64_t seq_len = 256;      // inputs per window (each window reads seq_len + 1 tokens)
    std::int64_t batch = 8;          // windows per forward pass
    std::int64_t max_windows = 0;    // 0: every window of the file
    bool per_window = false;         // also each window's mean loss (PerplexityResult::window_losses)
    // Windows done of all windows; a false return stops the run with Cancelled.
    ProgressCallback progress;
};

struct PerplexityResult {
    std::string file, tokens_file;
    ModelConfig config;
    std::string device;
    std::int64_t seq_len = 0, windows = 0, targets = 0;
    double loss = 0;          // mean cross entropy, nats per token
    double perplexity = 0;    // exp(loss)
    double bits_per_token = 0;
    double seconds = 0, tokens_per_second = 0;
    std::vector<double> window_losses;  // with per_window: each window's mean loss, window order
};

// Windows start at 0, seq_len, 2·seq_len, ... while a whole window of seq_len + 1 tokens fits (the
// layout of bitnet_reference.window_loss), and every target counts equally.
PerplexityResult run_perplexity(const io::Checkpoint& checkpoint, const PerplexityOptions& options);
PerplexityResult run_perplexity(const Model& model, const std::string& file, const PerplexityOptions& options);
nlohmann::ordered_json to_json(const PerplexityResult& result);

}  // namespace bitfsck::model
