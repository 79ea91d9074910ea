// The induction-head probe: runs real forward passes and reduces their attention probabilities to
// per-head metrics. Torch-free: attention arrives through Model::forward's sink.
#include "bitfsck/model/induction.hpp"
#include "bitfsck/io/json_document.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <unordered_map>

namespace bitfsck::model {

std::string_view probe_name(Probe p) { return p == Probe::RepeatedRandom ? "repeated_random" : "tokens"; }

std::vector<std::int64_t> previous_occurrence(std::span<const std::int64_t> tokens) {
    std::vector<std::int64_t> prev(tokens.size(), -1);
    std::unordered_map<std::int64_t, std::int64_t> last;
    for (std::size_t t = 0; t < tokens.size(); ++t) {
        auto it = last.find(tokens[t]);
        if (it != last.end()) prev[t] = it->second;
        last[tokens[t]] = static_cast<std::int64_t>(t);
    }
    return prev;
}

InductionAccumulator::InductionAccumulator(std::int64_t layers, std::int64_t heads)
    : layers_(layers), heads_(heads), sums_(static_cast<std::size_t>(layers * heads)) {}

void InductionAccumulator::count_row(std::span<const std::int64_t> tokens) {
    auto prev = previous_occurrence(tokens);
    for (std::size_t t = 0; t < tokens.size(); ++t)
        if (prev[t] >= 0 && prev[t] + 1 < static_cast<std::int64_t>(t)) ++eligible_;
    if (tokens.size() > 1) previous_ += static_cast<std::int64_t>(tokens.size()) - 1;
}

void InductionAccumulator::add(std::int64_t layer, std::span<const std::int64_t> tokens, const float* probs, std::int64_t heads,
                               std::int64_t seq) {
    if (layer < 0 || layer >= layers_ || heads != heads_ || static_cast<std::int64_t>(tokens.size()) != seq)
        throw ModelError("induction probe: attention of layer " + std::to_string(layer) + " does not match the model's shape");
    auto prev = previous_occurrence(tokens);
    for (std::int64_t h = 0; h < heads; ++h) {
        Sums& s = sums_[static_cast<std::size_t>(layer * heads_ + h)];
        const float* head = probs + h * seq * seq;
        for (std::int64_t t = 1; t < seq; ++t) {
            const float* row = head + t * seq;
            s.previous += row[t - 1];
            const std::int64_t j = prev[static_cast<std::size_t>(t)];
            if (j < 0 || j + 1 >= t) continue;
            // argmax over the causal part; the first maximum wins, as torch.argmax.
            const std::int64_t arg = std::max_element(row, row + t + 1) - row;
            s.hits += arg == j + 1 ? 1.0 : 0.0;
            s.induction += row[j + 1];
            s.duplicate += row[j];
        }
    }
}

std::vector<std::vector<HeadMetrics>> InductionAccumulator::result() const {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<std::vector<HeadMetrics>> out(static_cast<std::size_t>(layers_), std::vector<HeadMetrics>(static_cast<std::size_t>(heads_)));
    for (std::int64_t l = 0; l < layers_; ++l)
        for (std::int64_t h = 0; h < heads_; ++h) {
            const Sums& s = sums_[static_cast<std::size_t>(l * heads_ + h)];
            HeadMetrics& m = out[static_cast<std::size_t>(l)][static_cast<std::size_t>(h)];
            // Means with no positions behind them are NaN (JSON null), never a made-up 0.
            m.ipmr = eligible_ ? s.hits / double(eligible_) : nan;
            m.induction = eligible_ ? s.induction / double(eligible_) : nan;
            m.duplicate_token = eligible_ ? s.duplicate / double(eligible_) : nan;
            m.previous_token = previous_ ? s.previous / double(previous_) : nan;
        }
    return out;
}

std::vector<std::int64_t> repeated_random_tokens(std::int64_t batch, std::int64_t seq_len, std::int64_t vocab,
                                                 std::optional<std::int64_t> bos, std::optional<std::int64_t> eos,
                                                 std::uint64_t seed) {
    const std::int64_t reserved = (bos ? 1 : 0) + (eos && eos != bos ? 1 : 0);
    if (vocab - reserved < 2) throw ModelError("induction probe: the vocabulary is too small for random tokens");
    std::mt19937_64 rng(seed);
    std::vector<std::int64_t> out;
    const std::int64_t row_len = (bos ? 1 : 0) + 2 * seq_len;
    out.reserve(static_cast<std::size_t>(batch * row_len));
    for (std::int64_t b = 0; b < batch; ++b) {
        std::vector<std::int64_t> seq;
        while (static_cast<std::int64_t>(seq.size()) < seq_len) {
            // Plain modulo of a 64-bit draw: its bias is < vocab/2^64 and it is portable, unlike
            // std::uniform_int_distribution whose algorithm differs between standard libraries.
            const auto id = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(vocab));
            if ((bos && id == *bos) || (eos && id == *eos)) continue;
            seq.push_back(id);
        }
        if (bos) out.push_back(*bos);
        out.insert(out.end(), seq.begin(), seq.end());
        out.insert(out.end(), seq.begin(), seq.end());
    }
    return out;
}

void rank_heads(InductionReport& r, int top) {
    std::vector<HeadRef> all;
    r.specialists = 0;
    for (std::int64_t l = 0; l < r.layers; ++l)
        for (std::int64_t h = 0; h < r.heads; ++h) {
            const HeadMetrics& m = r.metrics[static_cast<std::size_t>(l)][static_cast<std::size_t>(h)];
            if (std::isnan(m.ipmr)) continue;
            all.push_back({l, h, m});
            if (m.ipmr >= r.specialist_threshold) ++r.specialists;
        }
    std::stable_sort(all.begin(), all.end(), [](const HeadRef& a, const HeadRef& b) {
        if (a.metrics.ipmr != b.metrics.ipmr) return a.metrics.ipmr > b.metrics.ipmr;
        return a.metrics.induction > b.metrics.induction;
    });
    if (static_cast<int>(all.size()) > top) all.resize(static_cast<std::size_t>(std::max(top, 0)));
    r.top = std::move(all);
}

InductionReport run_induction(const Model& model, const std::string& file, const InductionOptions& o) {
    const ModelConfig& cfg = model.config();
    if (o.seq_len < 2) throw ModelError("induction probe: --seq-len must be at least 2");
    if (o.batch < 1) throw ModelError("induction probe: --batch must be at least 1");
    InductionReport r;
    r.file = file;
    r.config = cfg;
    r.device = model.device();
    r.batch = o.batch;
    r.seq_len = o.seq_len;
    r.specialist_threshold = o.specialist_threshold;
    r.layers = cfg.num_layers;
    r.heads = cfg.num_heads;

    std::vector<std::int64_t> ids;  // all rows, each row_len long
    std::int64_t row_len = 0;
    if (!o.tokens_file) {
        r.probe = Probe::RepeatedRandom;
        r.bos = o.bos.value_or(cfg.bos_token_id.has_value());
        if (r.bos && !cfg.bos_token_id)
            throw ModelError(file + ": --bos was asked for but the model config names no bos_token_id");
        r.bos_token_id = r.bos ? cfg.bos_token_id : std::nullopt;
        r.seed = o.seed;
        r.windows = o.batch;
        ids = repeated_random_tokens(o.batch, o.seq_len, cfg.vocab_size, r.bos_token_id, cfg.eos_token_id, o.seed);
        row_len = (r.bos ? 1 : 0) + 2 * o.seq_len;
    } else {
        r.probe = Probe::Tokens;
        if (o.batches < 1) throw ModelError("induction probe: --batches must be at least 1");
        r.tokens_file = o.tokens_file->string();
        r.token_dtype = o.token_dtype == TokenDType::U16 ? "u16" : "u32";
        r.windows = o.batches;
        const std::int64_t need = o.batches * o.seq_len;
        ids = read_token_file(*o.tokens_file, o.token_dtype, need);
        if (static_cast<std::int64_t>(ids.size()) < need)
            throw ModelError(o.tokens_file->string() + ": " + std::to_string(ids.size()) + " tokens, but --batches " +
                             std::to_string(o.batches) + " × --seq-len " + std::to_string(o.seq_len) + " needs " + std::to_string(need));
        row_len = o.seq_len;
    }
    r.sequence_length = row_len;
    const std::int64_t rows = static_cast<std::int64_t>(ids.size()) / row_len;

    InductionAccumulator acc(cfg.num_layers, cfg.num_heads);
    for (std::int64_t i = 0; i < rows; ++i) acc.count_row(std::span(ids).subspan(static_cast<std::size_t>(i * row_len), static_cast<std::size_t>(row_len)));
    const auto t0 = std::chrono::steady_clock::now();
    ProgressTracker tracker(o.progress, ProgressUnit::Windows, static_cast<std::uint64_t>(rows));
    for (std::int64_t first = 0; first < rows; first += o.batch) {
        tracker.check(true);
        const std::int64_t n = std::min(o.batch, rows - first);
        auto chunk = std::span(ids).subspan(static_cast<std::size_t>(first * row_len), static_cast<std::size_t>(n * row_len));
        model.forward(chunk, n, row_len, false, [&](const LayerAttention& a) {
            for (std::int64_t b = 0; b < a.batch; ++b)
                acc.add(a.layer, chunk.subspan(static_cast<std::size_t>(b * row_len), static_cast<std::size_t>(row_len)),
                        a.probs + b * a.heads * a.queries * a.keys, a.heads, a.queries);
        });
        tracker.set(static_cast<std::uint64_t>(first + n));
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.tokens = rows * row_len;
    r.tokens_per_second = r.seconds > 0 ? double(r.tokens) / r.seconds : 0;
    r.eligible_positions = acc.eligible();
    r.previous_positions = acc.previous();
    r.metrics = acc.result();
    rank_heads(r, o.top);
    return r;
}

InductionReport run_induction(const io::Checkpoint& checkpoint, const InductionOptions& options) {
    Model model = Model::load(checkpoint, options.load);
    return run_induction(model, checkpoint.path().string(), options);
}

namespace {

nlohmann::ordered_json num(double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); }

nlohmann::ordered_json matrix(const InductionReport& r, double HeadMetrics::*field) {
    auto m = nlohmann::ordered_json::array();
    for (const auto& layer : r.metrics) {
        auto row = nlohmann::ordered_json::array();
        for (const auto& h : layer) row.push_back(num(h.*field));
        m.push_back(std::move(row));
    }
    return m;
}

}  // namespace

nlohmann::ordered_json to_json(const InductionReport& r) {
    nlohmann::ordered_json j = json_document(kInductionSchemaVersion);
    j["command"] = "induction";
    j["file"] = r.file;
    j["model"] = config_to_json(r.config);
    j["device"] = r.device;
    nlohmann::ordered_json p;
    p["name"] = std::string(probe_name(r.probe));
    p["batch"] = r.batch;
    p["seq_len"] = r.seq_len;
    p["rows"] = r.windows;
    p["sequence_length"] = r.sequence_length;
    if (r.probe == Probe::RepeatedRandom) {
        p["seed"] = r.seed;
        p["rng"] = "mt19937_64, id = draw % vocab_size, BOS/EOS ids redrawn";
        p["bos"] = r.bos;
        p["bos_token_id"] = r.bos_token_id ? nlohmann::ordered_json(*r.bos_token_id) : nlohmann::ordered_json(nullptr);
    } else {
        p["tokens_file"] = r.tokens_file;
        p["token_dtype"] = r.token_dtype;
        p["windows"] = r.windows;
        p["bos"] = false;
    }
    p["eligible_positions"] = r.eligible_positions;
    p["previous_positions"] = r.previous_positions;
    j["probe"] = p;
    j["layers"] = r.layers;
    j["heads"] = r.heads;
    j["specialist_threshold"] = r.specialist_threshold;
    j["specialist_heads"] = r.specialists;
    auto top = nlohmann::ordered_json::array();
    for (const auto& h : r.top)
        top.push_back({{"layer", h.layer}, {"head", h.head}, {"ipmr", num(h.metrics.ipmr)}, {"induction", num(h.metrics.induction)},
                       {"duplicate_token", num(h.metrics.duplicate_token)}, {"previous_token", num(h.metrics.previous_token)}});
    j["top_heads"] = top;
    nlohmann::ordered_json m;
    m["probe"] = std::string(probe_name(r.probe));
    m["ipmr"] = matrix(r, &HeadMetrics::ipmr);
    m["induction"] = matrix(r, &HeadMetrics::induction);
    m["duplicate_token"] = matrix(r, &HeadMetrics::duplicate_token);
    m["previous_token"] = matrix(r, &HeadMetrics::previous_token);
    j["metrics"] = m;
    j["timing"] = {{"seconds", r.seconds}, {"tokens", r.tokens}, {"tokens_per_second", r.tokens_per_second}};
    return j;
}

}  // namespace bitfsck::model
