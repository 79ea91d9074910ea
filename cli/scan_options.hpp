#pragma once
// The flags every analysing subcommand shares (scan, timeline): which quantizer, which
// thresholds, how many threads. One definition, so the subcommands cannot drift apart.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "bitfsck/io/error.hpp"  // before scan.hpp, which uses bitfsck::Error
#include "bitfsck/analysis/run.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/selection.hpp"

namespace bitfsck::cli {

struct ScanFlags {
    std::string quantizer = "bitnet";            // bitnet | distillix
    std::string thresholds_file;                 // JSON object of threshold overrides
    std::vector<std::string> threshold_overrides;  // "key=value", applied after the file
    unsigned threads = 0;                        // 0: every core
    std::string i2s_layout = "act-parallel";     // bitnet.cpp I2_S: act-parallel | interleaved | arm
};

// --layers, --roles, --match: which tensors, spelled the same wherever tensors are chosen (scan,
// timeline, inspect, diff, repair, finetune's regularizers).
struct SelectionFlags {
    std::string layers;
    std::vector<std::string> roles, match;
};
void add_selection_flags(CLI::App& sub, SelectionFlags& flags, const std::string& what);
// Throws CLI::ValidationError for a bad --layers or --roles.
analysis::TensorSelection make_selection(const SelectionFlags& flags);

// --i2s-layout, for every command that reads GGUF files (I2_S layouts are not recorded in them).
void add_i2s_layout_flag(CLI::App& sub, std::string& layout);
// The reading options of --i2s-layout (validated by the flag's check).
io::OpenOptions open_options(const std::string& i2s_layout);

// Adds --quantizer, --thresholds FILE.json, --threshold key=value (repeatable), -j/--threads and
// --i2s-layout.
void add_scan_flags(CLI::App& sub, std::shared_ptr<ScanFlags> flags);

// Builds the scan options; a bad thresholds file or override throws CLI::ValidationError, which
// main() turns into exit code 1 (usage) with the message.
analysis::ScanOptions make_scan_options(const ScanFlags& flags);

// The options of a run scan (scan, timeline, watch): the scan options, the selection and the
// reading options of --i2s-layout.
analysis::RunScanOptions make_run_scan_options(const ScanFlags& flags, const SelectionFlags& selection);

}  // namespace bitfsck::cli
