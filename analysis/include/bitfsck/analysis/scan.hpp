#pragma once
#include <filesystem>
#include <string>

#include "bitfsck/analysis/report.hpp"
#include "bitfsck/analysis/selection.hpp"
#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/progress.hpp"

namespace bitfsck::analysis {

struct ScanOptions {
    AnalysisOptions analysis;
    Thresholds thresholds;
    unsigned threads = 0;                  // 0: every core
    bool content_hash = true;              // xxh3-128 of the whole file
    ProgressCallback progress;             // bytes of tensor data; false stops the scan (Cancelled)
    TensorSelection selection;             // --layers/--roles/--match; empty: every tensor
};

// Statistics of every floating-point state-dict tensor, grouped by layer and role, judged.
ScanReport scan_checkpoint(const io::Checkpoint& checkpoint, const ScanOptions& options = {});

// Fills report.layers, report.findings and report.verdict from report.tensors and
// report.thresholds. Separate so verdicts can be re-judged with other thresholds.
void judge(ScanReport& report);

// The magnitude-and-zeros rule, one copy for every judge: a checkpoint's weight matrices (scale =
// absmean) and a training log's layer-roles (scale = the quantizer's gamma). Small weights and
// mostly-zero codes are one story when both show, so they make one outcome with both reasons.
struct RuleOutcome {
    Verdict severity = Verdict::Healthy;
    std::string rule;     // "std_below" or "zeros_above"; empty when healthy
    std::string message;  // "std 4.5e-05 < 1e-03 and 97.0% ternary zeros > 90%"
};
RuleOutcome judge_magnitude(double std, double scale, std::string_view scale_name, double ternary_zero_frac, const Thresholds& t);

// xxh3-128 of the file's bytes, "xxh3-128:<32 hex digits>", reading in chunks and releasing pages.
std::string content_hash(const io::MappedFile& file);
// The same over every file of a checkpoint, shard after shard (one file: its content_hash).
std::string content_hash(const io::Checkpoint& checkpoint);
// The same for a checkpoint input without parsing it: a file, a sharded index or its folder.
std::string content_hash_of(const std::filesystem::path& input);

}  // namespace bitfsck::analysis
