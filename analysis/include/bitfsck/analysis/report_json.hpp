#pragma once
// The one place analysis results become JSON. Every machine-readable output of bitfsck (scan,
// timeline, diff) is built here so that key names, number handling and the schema version stay
// consistent; docs/*.schema.json describe what these functions emit.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "bitfsck/analysis/report.hpp"
#include "bitfsck/io/json_document.hpp"

namespace bitfsck::analysis {

struct Timeline;
struct TimelinePoint;
struct WatchEvent;
struct CheckpointDiff;

// Bumped whenever a key is renamed or removed or its meaning changes; adding keys does not bump it.
inline constexpr int kJsonSchemaVersion = 1;
using bitfsck::kToolName;
// The version documents name when the caller passes none: the project's (io/json_document.hpp).
inline constexpr std::string_view kToolVersion = {};

// Scan report as documented in docs/scan.schema.json. Histograms ({lo, hi, counts}) are large
// for big models, so callers may leave them out. Non-finite numbers become null; the tensors'
// nan_count / inf_count say why.
nlohmann::ordered_json to_json(const ScanReport& report, bool include_histograms = true,
                               std::string_view tool_version = kToolVersion);
nlohmann::ordered_json to_json(const Timeline& timeline, std::string_view tool_version = kToolVersion);
nlohmann::ordered_json to_json(const CheckpointDiff& diff, std::string_view tool_version = kToolVersion);

// Pieces, shared by the documents above (and usable alone, e.g. for JSON lines output).
nlohmann::ordered_json to_json(const TensorStats& t, bool include_histograms = true);
nlohmann::ordered_json to_json(const LayerRoleStats& l);
nlohmann::ordered_json to_json(const Finding& f);
nlohmann::ordered_json to_json(const TimelinePoint& p);
// One line of `bitfsck watch --json`: {"event": "checkpoint"|"unreadable"|"removed"|"onset", "input", ...}.
nlohmann::ordered_json to_json(const WatchEvent& e);
nlohmann::ordered_json to_json(const SecuritySummary& s);
nlohmann::ordered_json to_json(const Histogram& h);

// A finite double, or null: JSON has no NaN or Infinity, and nlohmann would write "null" anyway
// but only at dump time, which hides the decision from readers of this code.
nlohmann::ordered_json json_number(double v);

// The worst severity of the findings about one subject (a tensor name); healthy when none.
Verdict verdict_of_subject(const ScanReport& report, std::string_view subject);

// Two-space indented text. Invalid UTF-8 (tensor names come from arbitrary pickles) is replaced
// by U+FFFD instead of throwing.
std::string dump_json(const nlohmann::ordered_json& j);

}  // namespace bitfsck::analysis
