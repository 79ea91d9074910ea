#include "bitfsck/model/generate.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include "bitfsck/model/tokenizer.hpp"
#include "bitfsck/io/json_document.hpp"

namespace bitfsck::model {

StepStats step_stats(std::span<const float> logits) {
    StepStats s;
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (float v : logits) {
        if (!std::isfinite(v)) {
            ++s.non_finite;
            continue;
        }
        lo = std::min(lo, v), hi = std::max(hi, v);
    }
    s.range = hi >= lo ? double(hi) - double(lo) : 0.0;
    return s;
}

DegenerationReport check_degeneration(std::span<const std::int64_t> g, std::span<const StepStats> steps, const DegenerationOptions& o) {
    DegenerationReport r;
    for (const auto& s : steps) {
        if (s.non_finite) ++r.non_finite_steps;
        else if (s.range < o.constant_logit_range) ++r.constant_steps;
    }
    if (r.non_finite_steps)
        r.reasons.push_back("NaN/Inf logits at " + std::to_string(r.non_finite_steps) + " of " + std::to_string(steps.size()) + " steps");
    if (r.constant_steps)
        r.reasons.push_back("all-same logits at " + std::to_string(r.constant_steps) + " of " + std::to_string(steps.size()) + " steps");
    r.broken = r.non_finite_steps || r.constant_steps;

    const auto n = static_cast<std::int64_t>(g.size());
    std::int64_t run = 0;
    std::map<std::int64_t, std::int64_t> counts;
    for (std::int64_t i = 0; i < n; ++i) {
        run = i && g[i] == g[i - 1] ? run + 1 : 1;
        if (run > r.longest_run) r.longest_run = run, r.longest_run_token = g[i];
        ++counts[g[i]];
    }
    for (auto [tok, c] : counts)
        if (double(c) / double(n) > r.top_token_share) r.top_token_share = double(c) / double(n), r.top_token = tok;
    // The longest suffix with g[i] == g[i - p]: a loop of period p (p = 1 is one repeated token).
    for (std::int64_t p = 1; p <= o.max_ngram && p < n; ++p) {
        std::int64_t len = p;
        for (std::int64_t i = n - 1; i >= p && g[i] == g[i - p]; --i) ++len;
        if (len / p >= o.min_loop_repeats && len > r.loop_length) r.loop_length = len, r.loop_period = p;
    }
    if (n >= o.min_tokens) {
        if (r.longest_run >= o.max_run)
            r.reasons.push_back("token " + std::to_string(r.longest_run_token) + " repeated " + std::to_string(r.longest_run) + " times in a row");
        if (r.top_token_share > o.max_token_share)
            r.reasons.push_back("token " + std::to_string(r.top_token) + " is " + std::to_string(int(std::lround(100 * r.top_token_share))) +
                                "% of the output");
        if (r.loop_period > 1 && double(r.loop_length) >= o.min_loop_share * double(n))
            r.reasons.push_back(std::to_string(r.loop_period) + "-gram loop over the last " + std::to_string(r.loop_length) + " of " +
                                std::to_string(n) + " tokens");
    }
    r.degenerate = !r.reasons.empty();
    return r;
}

std::int64_t sample_token(std::span<const float> logits, double temperature, std::int64_t top_k, double top_p, std::mt19937_64& rng) {
    if (logits.empty()) throw ModelError("generate: empty logits");
    std::vector<std::int64_t> idx;
    for (std::size_t i = 0; i < logits.size(); ++i)
        if (std::isfinite(logits[i])) idx.push_back(static_cast<std::int64_t>(i));
    if (idx.empty()) return 0;  // all NaN: nothing to choose from; the degeneration check reports it
    // Highest first; ties keep the lower id (as argmax).
    std::stable_sort(idx.begin(), idx.end(), [&](auto a, auto b) { return logits[a] > logits[b]; });
    if (temperature <= 0) return idx.front();
    if (top_k > 0 && static_cast<std::size_t>(top_k) < idx.size()) idx.resize(static_cast<std::size_t>(top_k));
    std::vector<double> p(idx.size());
    const double top = logits[idx.front()];
    for (std::size_t i = 0; i < idx.size(); ++i) p[i] = std::exp((double(logits[idx[i]]) - top) / temperature);
    double total = std::accumulate(p.begin(), p.end(), 0.0);
    if (top_p < 1.0) {
        double cum = 0;
        std::size_t keep = 0;
        while (keep < p.size() && cum < top_p * total) cum += p[keep++];
        p.resize(std::max<std::size_t>(keep, 1));
        total = std::accumulate(p.begin(), p.end(), 0.0);
    }
    // A 53-bit uniform from the raw engine: the same draw on every standard library.
    const double u = double(rng() >> 11) * 0x1.0p-53 * total;
    double cum = 0;
    for (std::size_t i = 0; i < p.size(); ++i) {
        cum += p[i];
        if (u < cum) return idx[i];
    }
    return idx[p.size() - 1];
}

GenerateResult run_generate(const Model& model, const std::string& file, const GenerateOptions& o) {
    const ModelConfig& cfg = model.config();
    Tokenizer tok = Tokenizer::create(o.tokenizer, cfg.vocab_size);
    GenerateResult r;
    r.file = file;
    r.config = cfg;
    r.device = model.device();
    r.tokenizer = std::string(tok.kind_name());
    r.greedy = o.temperature <= 0;
    r.temperature = o.temperature, r.top_k = o.top_k, r.top_p = o.top_p, r.seed = o.seed;
    if (o.max_new_tokens < 1) throw ModelError("generate: --max-new-tokens must be at least 1");
    if (!(o.top_p > 0 && o.top_p <= 1)) throw ModelError("generate: --top-p must be in (0, 1]");

    std::optional<std::int64_t> bos = cfg.bos_token_id ? cfg.bos_token_id : tok.bos_id();
    std::optional<std::int64_t> eos = cfg.eos_token_id ? cfg.eos_token_id : tok.eos_id();
    const bool add_bos = o.bos.value_or(tok.kind() == Tokenizer::Kind::SentencePiece && bos.has_value());
    if (add_bos && !bos) throw ModelError(file + ": --bos was asked for but neither the config nor the tokenizer names a BOS id");
    if (add_bos) r.prompt_ids.push_back(*bos);
    auto body = tok.encode(o.prompt);
    r.prompt_ids.insert(r.prompt_ids.end(), body.begin(), body.end());
    if (r.prompt_ids.empty()) throw ModelError("generate: the prompt is empty and the model has no BOS token to start from");
    r.prompt_text = o.prompt;

    std::int64_t limit = o.max_new_tokens;
    if (cfg.max_positions) {
        const std::int64_t room = cfg.max_positions - static_cast<std::int64_t>(r.prompt_ids.size());
        if (room < 1)
            throw ModelError(file + ": the prompt (" + std::to_string(r.prompt_ids.size()) + " tokens) fills the model's " +
                             std::to_string(cfg.max_positions) + " positions");
        limit = std::min(limit, room);
    }
    std::mt19937_64 rng(o.seed);
    std::vector<StepStats> steps;
    Session session = model.start_session();
    const auto t0 = std::chrono::steady_clock::now();
    ProgressTracker tracker(o.progress, ProgressUnit::Tokens, static_cast<std::uint64_t>(limit));
    tracker.check(true);
    std::vector<float> logits = session.feed(r.prompt_ids);
    for (std::int64_t i = 0; i < limit; ++i) {
        tracker.set(static_cast<std::uint64_t>(i));
        steps.push_back(step_stats(logits));
        const std::int64_t next = sample_token(logits, o.temperature, o.top_k, o.top_p, rng);
        r.generated.push_back(next);
        if (o.stop_at_eos && eos && next == *eos) {
            r.stopped_at_eos = true;
            break;
        }
        if (i + 1 < limit) logits = session.feed(std::span(&next, 1));
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.tokens_per_second = r.seconds > 0 ? double(r.generated.size()) / r.seconds : 0;
    r.text = tok.decode(r.generated);
    r.degeneration = check_degeneration(r.generated, steps, o.degeneration);
    return r;
}

GenerateResult run_generate(const io::Checkpoint& checkpoint, const GenerateOptions& options) {
    Model model = Model::load(checkpoint, options.load);
    return run_generate(model, checkpoint.path().string(), options);
}

nlohmann::ordered_json to_json(const GenerateResult& r) {
    nlohmann::ordered_json j = json_document(1);
    j["command"] = "generate";
    j["file"] = r.file;
    j["model"] = config_to_json(r.config);
    j["device"] = r.device;
    j["tokenizer"] = r.tokenizer;
    j["decoding"] = {{"greedy", r.greedy}, {"temperature", r.temperature}, {"top_k", r.top_k}, {"top_p", r.top_p}, {"seed", r.seed}};
    j["prompt"] = r.prompt_text;
    j["prompt_ids"] = r.prompt_ids;
    j["generated_ids"] = r.generated;
    j["text"] = r.text;
    j["stopped_at_eos"] = r.stopped_at_eos;
    const auto& d = r.degeneration;
    j["degeneration"] = {{"degenerate", d.degenerate},
                         {"broken", d.broken},
                         {"reasons", d.reasons},
                         {"longest_run", d.longest_run},
                         {"longest_run_token", d.longest_run_token},
                         {"top_token", d.top_token},
                         {"top_token_share", d.top_token_share},
                         {"loop_period", d.loop_period},
                         {"loop_length", d.loop_length},
                         {"non_finite_steps", d.non_finite_steps},
                         {"constant_steps", d.constant_steps}};
    j["timing"] = {{"seconds", r.seconds}, {"tokens_per_second", r.tokens_per_second}};
    return j;
}

}  // namespace bitfsck::model
