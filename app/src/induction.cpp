// The induction view's logic: names and meanings of the figures, the probe options, the colour
// scale, hit-testing of the heat map and the top head. No ImGui, no LibTorch.
#include "bitfsck/app/induction.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "bitfsck/io/text.hpp"

namespace bitfsck::app {

namespace {

}  // namespace

std::string_view induction_metric_name(InductionMetric m) {
    switch (m) {
        case InductionMetric::Ipmr: return "IPMR";
        case InductionMetric::Induction: return "induction score";
        case InductionMetric::PreviousToken: return "previous-token score";
        case InductionMetric::DuplicateToken: return "duplicate-token score";
    }
    return "IPMR";
}

std::string explain_induction_metric(InductionMetric m) {
    // Eligible positions as bitfsck/model/induction.hpp defines them.
    const std::string eligible =
        "over the eligible query positions t: t's token occurred earlier, most recently at j, with j + 1 < t";
    switch (m) {
        case InductionMetric::Ipmr:
            return "IPMR (induction prefix match rate): " + eligible +
                   ", the share of them where the head's argmax attention falls exactly on j + 1, the token that followed "
                   "the previous occurrence. That is what an induction head does ([A][B] ... [A] -> attend to [B]). 0 to 1; "
                   "random attention over a row of n tokens gives about 1/n.";
        case InductionMetric::Induction:
            return "Induction score: " + eligible + ", the mean attention mass the head puts on j + 1 (the token after the "
                   "previous occurrence). 0 to 1; a soft version of IPMR.";
        case InductionMetric::PreviousToken:
            return "Previous-token score: the mean attention mass on t - 1, over every position t >= 1. Previous-token heads "
                   "feed induction heads in the layer after them.";
        case InductionMetric::DuplicateToken:
            return "Duplicate-token score: " + eligible + ", the mean attention mass on j itself (the earlier copy of the "
                   "same token).";
    }
    return {};
}

std::string explain_induction_probe() {
    return "The repeated-random probe (bitfsck_model, as `bitfsck induction`): `batch` rows of `seq_len` random tokens repeated "
           "twice (BOS first when the model config names one), drawn from a fixed-seed mt19937_64, fed through the model "
           "in one forward pass; every layer's attention probabilities give each head's figures. In the second half every "
           "token has been seen, so a working induction head attends to the token after its first occurrence.";
}

std::string params_label(const InductionParams& p) {
    return p.device + ", " + std::to_string(p.batch) + " x " + std::to_string(p.seq_len) + " tokens x2, seed " +
           std::to_string(p.seed) + (p.quantized ? ", quantized" : ", unquantized");
}

std::string head_label(const HeadCell& c) { return "L" + std::to_string(c.layer) + ".H" + std::to_string(c.head); }

std::optional<HeadCell> head_at(const HeatGrid& g, float px, float py) {
    if (g.layers <= 0 || g.heads <= 0 || g.cell_w <= 0 || g.cell_h <= 0) return std::nullopt;
    const double fx = (px - g.x) / g.cell_w, fy = (py - g.y) / g.cell_h;
    if (!(fx >= 0) || !(fy >= 0)) return std::nullopt;  // also NaN
    const auto head = static_cast<std::int64_t>(std::floor(fx)), layer = static_cast<std::int64_t>(std::floor(fy));
    if (head >= g.heads || layer >= g.layers) return std::nullopt;
    return HeadCell{layer, head};
}

double colour_fraction(double value, const ColourRange& r) {
    if (!std::isfinite(value)) return 0.0;
    if (!(r.hi > r.lo)) return value > r.lo ? 1.0 : 0.0;
    return std::clamp((value - r.lo) / (r.hi - r.lo), 0.0, 1.0);
}

#ifdef BITFSCK_APP_HAVE_MODEL

model::InductionOptions induction_options(const InductionParams& p) {
    model::InductionOptions o;
    o.load.device = p.device;
    if (!p.quantized) o.load.config.overrides["quantize"] = false;
    o.seq_len = p.seq_len;
    o.batch = p.batch;
    o.seed = p.seed;
    return o;
}

double metric_value(const model::HeadMetrics& m, InductionMetric metric) {
    switch (metric) {
        case InductionMetric::Ipmr: return m.ipmr;
        case InductionMetric::Induction: return m.induction;
        case InductionMetric::PreviousToken: return m.previous_token;
        case InductionMetric::DuplicateToken: return m.duplicate_token;
    }
    return m.ipmr;
}

const model::HeadMetrics* head_metrics(const model::InductionReport& r, const HeadCell& c) {
    if (c.layer < 0 || c.head < 0 || static_cast<std::size_t>(c.layer) >= r.metrics.size()) return nullptr;
    const auto& row = r.metrics[static_cast<std::size_t>(c.layer)];
    if (static_cast<std::size_t>(c.head) >= row.size()) return nullptr;
    return &row[static_cast<std::size_t>(c.head)];
}

std::optional<HeadCell> top_head(const model::InductionReport& r, InductionMetric metric) {
    // By IPMR the library has ranked the heads already (ties broken by the induction score).
    if (metric == InductionMetric::Ipmr && !r.top.empty()) return HeadCell{r.top.front().layer, r.top.front().head};
    std::optional<HeadCell> best;
    double best_value = 0;
    for (std::size_t l = 0; l < r.metrics.size(); ++l)
        for (std::size_t h = 0; h < r.metrics[l].size(); ++h) {
            const double v = metric_value(r.metrics[l][h], metric);
            if (std::isnan(v)) continue;
            if (!best || v > best_value) {
                best = HeadCell{static_cast<std::int64_t>(l), static_cast<std::int64_t>(h)};
                best_value = v;
            }
        }
    return best;
}

ColourRange colour_range(const model::InductionReport& r, InductionMetric metric, bool scale_to_max) {
    ColourRange range{0.0, 1.0};
    if (!scale_to_max) return range;
    double hi = 0;
    for (const auto& row : r.metrics)
        for (const auto& m : row)
            if (const double v = metric_value(m, metric); std::isfinite(v)) hi = std::max(hi, v);
    range.hi = hi > 0 ? hi : 1.0;
    return range;
}

std::string head_tooltip(const model::InductionReport& r, const HeadCell& c, InductionMetric shown) {
    const model::HeadMetrics* m = head_metrics(r, c);
    if (!m) return head_label(c) + ": no such head";
    std::string t = "layer " + std::to_string(c.layer) + ", head " + std::to_string(c.head) + " (" + head_label(c) + ")\n";
    for (int i = 0; i < kInductionMetricCount; ++i) {
        const auto metric = static_cast<InductionMetric>(i);
        t += std::string(metric == shown ? "> " : "  ") + std::string(induction_metric_name(metric)) + "  " +
             fmt("%.4f", metric_value(*m, metric)) + "\n";
    }
    if (std::isfinite(m->ipmr) && m->ipmr >= r.specialist_threshold)
        t += "A specialist: IPMR >= " + fmt("%.3g", r.specialist_threshold) + ".\n";
    if (auto top = top_head(r, shown); top && *top == c) t += "The top head by " + std::string(induction_metric_name(shown)) + ".\n";
    t += "\n" + explain_induction_metric(shown);
    return t;
}

std::string report_summary(const model::InductionReport& r) {
    const auto& c = r.config;
    std::string s = std::string(model::layout_name(c.layout)) + ", " + std::to_string(r.layers) + " layers x " +
                    std::to_string(r.heads) + " heads, hidden " + std::to_string(c.hidden_size) + ", vocab " +
                    std::to_string(c.vocab_size) + (c.quantize ? ", quantized" : ", unquantized") + "; probe " +
                    std::string(model::probe_name(r.probe)) + ": " + std::to_string(r.batch) + " rows of " + std::to_string(r.seq_len) +
                    " random tokens x2, seed " + std::to_string(r.seed) + (r.bos ? ", BOS first" : ", no BOS") + "; " +
                    std::to_string(r.eligible_positions) + " eligible positions, " + std::to_string(r.tokens) + " tokens at " +
                    fmt("%.0f", r.tokens_per_second) + " tokens/s on " + r.device;
    return s;
}

#endif

}  // namespace bitfsck::app
