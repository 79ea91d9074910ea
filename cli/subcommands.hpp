#pragma once
// Each subcommand lives in its own file and adds itself to the app with add_<name>_subcommand.
// Subcommands report their exit status through set_exit_code(); main() returns the value.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "bitfsck/io/error.hpp"

namespace bitfsck::cli {

// Documented exit codes (README, `bitfsck --help`). When several apply, the highest wins
// except that unreadable input (2) outranks everything but usage errors.
enum ExitCode : int {
    kOk = 0,
    kUsage = 1,        // bad flags or arguments
    kUnreadable = 2,   // a file could not be read: missing, truncated, corrupted, wrong format
    kSecurity = 3,     // a pickle would import or call something outside the allow-list
    kDegraded = 4,     // scan/timeline: the worst verdict is degraded
    kCollapsed = 5,    // scan/timeline: the worst verdict is collapsed
    kUnknown = 6,      // scan/timeline: nothing could be judged (unknown tensor names or undecodable encodings)
    kNotBetterThanBaseline = 7,  // resurrect: a healthy result that does not beat the best baseline significantly
    kInternal = 70,    // a bug: an unexpected exception (EX_SOFTWARE)
    kInterrupted = 130,  // stopped by Ctrl-C (what was reached is saved where a command saves)
};

void set_exit_code(int code);  // keeps the most important code seen so far
int last_exit_code();
int exit_for_parse_error(CLI::App& app, const CLI::ParseError& e);

// The one mapping from an error's kind to the exit code: usage 1; unreadable input, a missing
// file, an output that could not be written, a checkpoint that is no model 2; interrupted 130.
int exit_code_for(const Error& e);
// One line on stderr and the error's exit code.
void report(const Error& e);

// Runs a subcommand's body, reporting a bitfsck::Error as report() does (main() does the same
// for anything a body lets through); CLI11's errors pass through.
void run_reporting_errors(const std::function<void()>& body);

// The name in `names` at most two edits from `typed`, or "".
std::string closest_name(const std::string& typed, const std::vector<std::string>& names);

void add_inspect_subcommand(CLI::App& app);
void add_scan_subcommand(CLI::App& app);
void add_timeline_subcommand(CLI::App& app);
void add_watch_subcommand(CLI::App& app);
void add_diff_subcommand(CLI::App& app);
void add_convert_subcommand(CLI::App& app);
void add_repair_subcommand(CLI::App& app);
void add_repair_svd_subcommand(CLI::App& repair);
void add_repair_align_subcommand(CLI::App& repair);
void add_repair_inflate_subcommand(CLI::App& repair);
void add_repair_pick_subcommand(CLI::App& repair);
void add_repair_replay_subcommand(CLI::App& repair);
void add_plan_subcommand(CLI::App& app);
void add_resurrect_subcommand(CLI::App& app);
#ifdef BITFSCK_HAVE_MODEL
void add_induction_subcommand(CLI::App& app);
void add_generate_subcommand(CLI::App& app);
void add_perplexity_subcommand(CLI::App& app);
void add_finetune_subcommand(CLI::App& app);
#else
// bitfsck hands these to the sibling executable bitfsck-model (model_forwarding.cpp).
void add_model_forwarding_subcommands(CLI::App& app);
bool is_model_command(const char* arg);
int run_model_executable(char** argv);  // returns only when it could not be started
#endif

inline void add_all_subcommands(CLI::App& app) {
    add_inspect_subcommand(app);
    add_scan_subcommand(app);
    add_timeline_subcommand(app);
    add_watch_subcommand(app);
    add_diff_subcommand(app);
    add_convert_subcommand(app);
    add_repair_subcommand(app);
    add_plan_subcommand(app);
    add_resurrect_subcommand(app);
#ifdef BITFSCK_HAVE_MODEL
    add_induction_subcommand(app);
    add_generate_subcommand(app);
    add_perplexity_subcommand(app);
    add_finetune_subcommand(app);
#else
    add_model_forwarding_subcommands(app);
#endif
}

}  // namespace bitfsck::cli
