#pragma once
// The induction view's logic without a window: the probe parameters the user picks, which figure
// the heat map shows, the colour scale, which head is under the pointer and which is on top.
// The probe and every figure are bitfsck_model's (model::run_induction); this only reads them.
// bitfsck_model is linked only where it is built (BITFSCK_APP_HAVE_MODEL); without it the view
// says so and nothing here touches a report.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#ifdef BITFSCK_APP_HAVE_MODEL
#include "bitfsck/model/induction.hpp"
#endif

namespace bitfsck::app {

#ifdef BITFSCK_APP_HAVE_MODEL
inline constexpr bool kHaveModel = true;
#else
inline constexpr bool kHaveModel = false;
#endif

// The figures of a head the heat map can show (model::HeadMetrics).
enum class InductionMetric { Ipmr, Induction, PreviousToken, DuplicateToken };
inline constexpr int kInductionMetricCount = 4;
std::string_view induction_metric_name(InductionMetric m);  // "IPMR", "induction score", ...
// What a figure means, from the definitions in bitfsck/model/induction.hpp.
std::string explain_induction_metric(InductionMetric m);
// What the repeated-random probe feeds the model and which positions count.
std::string explain_induction_probe();

// The probe as the user sets it up (the repeated-random probe of model::InductionOptions).
struct InductionParams {
    std::string device = "cpu";  // "cpu" or "cuda" (or "cuda:N")
    std::int64_t seq_len = 64;   // random tokens, repeated twice
    std::int64_t batch = 8;      // rows
    std::uint64_t seed = 1234;
    bool quantized = true;       // false: the same weights unquantized (config override quantize=false)
    bool operator==(const InductionParams&) const = default;
};
// "cpu, 8 x 64 tokens x2, seed 1234, quantized": how a report was run, for labels and the log.
std::string params_label(const InductionParams& p);

// A head: a cell of the layers x heads heat map.
struct HeadCell {
    std::int64_t layer = 0, head = 0;
    bool operator==(const HeadCell&) const = default;
};
std::string head_label(const HeadCell& c);  // "L1.H3"

// Where the heat map was drawn: rows are layers top to bottom, columns heads left to right.
struct HeatGrid {
    float x = 0, y = 0;            // top-left corner of cell (0, 0)
    float cell_w = 0, cell_h = 0;
    std::int64_t layers = 0, heads = 0;
};
// The cell under the point (px, py), if any.
std::optional<HeadCell> head_at(const HeatGrid& g, float px, float py);

// The colour scale: [0, 1] (the figures are shares and attention mass) or [0, largest value],
// so that the weak heads of a small or collapsed model still tell apart. Maps a value to [0, 1].
struct ColourRange {
    double lo = 0, hi = 1;
};
double colour_fraction(double value, const ColourRange& r);

#ifdef BITFSCK_APP_HAVE_MODEL
model::InductionOptions induction_options(const InductionParams& p);
double metric_value(const model::HeadMetrics& m, InductionMetric metric);
// The head with the largest figure (ties: the first in layer, head order; NaN never wins);
// nullopt for an empty report. By IPMR: the library's first ranked head (report.top), whose
// ties go to the larger induction score.
std::optional<HeadCell> top_head(const model::InductionReport& r, InductionMetric metric);
ColourRange colour_range(const model::InductionReport& r, InductionMetric metric, bool scale_to_max);
const model::HeadMetrics* head_metrics(const model::InductionReport& r, const HeadCell& c);
// The hover text of a head: its four figures, whether it is a specialist, and what the shown
// figure means.
std::string head_tooltip(const model::InductionReport& r, const HeadCell& c, InductionMetric shown);
// One line about the run: layout, size, probe, eligible positions, speed, device.
std::string report_summary(const model::InductionReport& r);
#endif

}  // namespace bitfsck::app
