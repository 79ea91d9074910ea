#pragma once
// What the repair subcommands (svd, align, inflate) share: the output, the tensor selection,
// the healthy reference, the scan flags, and how a finished repair is shown.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bitfsck/repair/repair.hpp"
#include "scan_options.hpp"

namespace bitfsck::cli {

struct RepairFlags {
    std::string input, output;
    SelectionFlags selection;
    std::string like;
    bool drop_optimizer_state = false;
    bool json = false;
    std::shared_ptr<ScanFlags> scan = std::make_shared<ScanFlags>();
};

// Adds INPUT, -o/--output, --layers, --roles, --match, --like, --drop-optimizer-state, --json and
// the scan flags.
void add_repair_flags(CLI::App& sub, const std::shared_ptr<RepairFlags>& flags);

// Runs the step with the shared flags, prints the table (or the log as JSON with --json) and sets
// the exit code. Errors become one line on stderr and exit code 1 (usage) or 2 (unreadable).
void run_repair_step(const RepairFlags& flags, const repair::StepSpec& step);

// The help footer every step shares, after the step's own examples.
std::string repair_footer(const std::string& examples);

}  // namespace bitfsck::cli
