#pragma once
// The flags every analysing subcommand shares (scan, timeline): which quantizer, which
// thresholds, how many threads. One definition, so the subcommands cannot drift apart.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "bitfsck/io/error.hpp"  // before scan.hpp, which uses bitfsck::Error
#include "bitfsck/analysis/scan.hpp"

namespace bitfsck::cli {

struct ScanFlags {
    std::string quantizer = "bitnet";            // bitnet | distillix
    std::string thresholds_file;                 // JSON object of threshold overrides
    std::vector<std::string> threshold_overrides;  // "key=value", applied after the file
    unsigned threads = 0;                        // 0: every core
};

// Adds --quantizer, --thresholds FILE.json, --threshold key=value (repeatable) and -j/--threads.
void add_scan_flags(CLI::App& sub, std::shared_ptr<ScanFlags> flags);

// Builds the scan options; a bad thresholds file or override throws CLI::ValidationError, which
// main() turns into exit code 1 (usage) with the message.
analysis::ScanOptions make_scan_options(const ScanFlags& flags);

}  // namespace bitfsck::cli
