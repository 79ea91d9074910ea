#pragma once
// `bitfsck timeline OUT.metrics.jsonl`: the timeline of a fine-tuning run from its metrics file.
#include <filesystem>

#include "bitfsck/analysis/thresholds.hpp"

namespace bitfsck::cli {

bool is_metrics_file(const std::filesystem::path& p);
// Prints the table (or JSON) and sets the exit code from the last step's verdict.
void run_metrics_timeline(const std::filesystem::path& file, bool json, const analysis::Thresholds& thresholds);

}  // namespace bitfsck::cli
