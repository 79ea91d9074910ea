#include "bitfsck/model/perplexity.hpp"
#include "bitfsck/io/json_document.hpp"

#include <chrono>
#include <cmath>

namespace bitfsck::model {

PerplexityResult run_perplexity(const Model& model, const std::string& file, const PerplexityOptions& o) {
    const ModelConfig& cfg = model.config();
    if (o.seq_len < 1) throw ModelError("perplexity: --seq-len must be at least 1");
    if (o.batch < 1) throw ModelError("perplexity: --batch must be at least 1");
    if (cfg.max_positions && o.seq_len > cfg.max_positions)
        throw ModelError(file + ": --seq-len " + std::to_string(o.seq_len) + " is longer than the model's " +
                         std::to_string(cfg.max_positions) + " positions");
    PerplexityResult r;
    r.file = file;
    r.tokens_file = o.tokens_file.string();
    r.config = cfg;
    r.device = model.device();
    r.seq_len = o.seq_len;
    const std::int64_t max_tokens = o.max_windows > 0 ? o.max_windows * o.seq_len + 1 : std::numeric_limits<std::int64_t>::max();
    const std::vector<std::int64_t> ids = read_token_file(o.tokens_file, o.token_dtype, max_tokens);
    const auto n = static_cast<std::int64_t>(ids.size());
    std::vector<std::int64_t> offsets;
    for (std::int64_t off = 0; off + o.seq_len + 1 <= n; off += o.seq_len) offsets.push_back(off);
    if (o.max_windows > 0 && static_cast<std::int64_t>(offsets.size()) > o.max_windows) offsets.resize(static_cast<std::size_t>(o.max_windows));
    if (offsets.empty())
        throw ModelError(r.tokens_file + ": " + std::to_string(n) + " tokens are not one window of --seq-len " + std::to_string(o.seq_len) + " + 1");
    r.windows = static_cast<std::int64_t>(offsets.size());

    double nll = 0;
    std::int64_t count = 0;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::int64_t> batch;
    ProgressTracker tracker(o.progress, ProgressUnit::Windows, offsets.size());
    for (std::size_t first = 0; first < offsets.size(); first += static_cast<std::size_t>(o.batch)) {
        tracker.check(true);
        const std::size_t last = std::min(offsets.size(), first + static_cast<std::size_t>(o.batch));
        batch.clear();
        for (std::size_t w = first; w < last; ++w)
            batch.insert(batch.end(), ids.begin() + offsets[w], ids.begin() + offsets[w] + o.seq_len + 1);
        LossSum s = model.next_token_loss(batch, static_cast<std::int64_t>(last - first), o.seq_len + 1);
        nll += s.nll_sum, count += s.count;
        if (o.per_window)
            for (double row : s.row_nll) r.window_losses.push_back(row / double(o.seq_len));
        tracker.set(last);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.targets = count;
    r.loss = nll / double(count);
    r.perplexity = std::exp(r.loss);
    r.bits_per_token = r.loss / std::log(2.0);
    r.tokens_per_second = r.seconds > 0 ? double(count) / r.seconds : 0;
    return r;
}

PerplexityResult run_perplexity(const io::Checkpoint& checkpoint, const PerplexityOptions& options) {
    Model model = Model::load(checkpoint, options.load);
    return run_perplexity(model, checkpoint.path().string(), options);
}

nlohmann::ordered_json to_json(const PerplexityResult& r) {
    auto num = [](double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); };
    nlohmann::ordered_json j = json_document(1);
    j["command"] = "perplexity";
    j["file"] = r.file;
    j["model"] = config_to_json(r.config);
    j["device"] = r.device;
    j["tokens_file"] = r.tokens_file;
    j["seq_len"] = r.seq_len;
    j["windows"] = r.windows;
    j["targets"] = r.targets;
    j["loss"] = num(r.loss);
    j["perplexity"] = num(r.perplexity);
    j["bits_per_token"] = num(r.bits_per_token);
    j["finite"] = std::isfinite(r.loss);
    if (!r.window_losses.empty()) {
        nlohmann::ordered_json w = nlohmann::ordered_json::array();
        for (double v : r.window_losses) w.push_back(num(v));
        j["window_losses"] = std::move(w);
    }
    j["timing"] = {{"seconds", r.seconds}, {"tokens_per_second", r.tokens_per_second}};
    return j;
}

}  // namespace bitfsck::model
