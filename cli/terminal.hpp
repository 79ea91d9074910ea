#pragma once
// Terminal niceties shared by the subcommands: colours only on a terminal, a progress line on
// stderr only when stderr is a terminal, and one-line error reports.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "bitfsck/io/progress.hpp"
#include "bitfsck/io/text.hpp"  // fmt, shape_text, human_bytes

namespace bitfsck::cli {

bool stdout_is_terminal();
bool stderr_is_terminal();

// ANSI colour wrappers; return the text unchanged when stdout is not a terminal or NO_COLOR is set.
std::string red(std::string_view s);
std::string yellow(std::string_view s);
std::string green(std::string_view s);
std::string bold(std::string_view s);

// "bitfsck: <message>" on stderr.
void print_error(std::string_view message);
void print_warning(std::string_view message);

// Progress on stderr: on a terminal a single self-overwriting line ("scan  42% 170/400 MB
// layers.3...", "finetune 12% 7/60 steps"), redrawn at most every 100 ms; elsewhere (a Slurm or
// nohup log) a plain line every few seconds, so a log never stays empty for minutes. Silent with
// --quiet. Thread-safe.
class ProgressLine {
public:
    explicit ProgressLine(std::string label);
    ~ProgressLine();
    void update(const Progress& p);
    void update(std::uint64_t done, std::uint64_t total, std::string_view detail = {});  // bytes
    // The callback to hand a library: draws, and returns false once Ctrl-C was pressed.
    ProgressCallback callback();
    void finish();

private:
    std::mutex mutex_;
    std::string label_;
    bool terminal_ = false;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point last_{};
};

// "170/400 MB", "7/60 steps", "3/7 checkpoints".
std::string progress_amount(const Progress& p);

// Ctrl-C: the first one sets a flag that every ProgressLine::callback() turns into a stop (the
// library saves what it must and throws Cancelled, which exits 130); a second one ends the process.
void install_interrupt_handler();
bool interrupted();
// The flag itself, for libraries that poll an atomic rather than a callback (model::FinetuneOptions::stop).
const std::atomic<bool>& interrupt_flag();

// --quiet: no progress lines, no notes (errors and the results still print).
void set_quiet(bool quiet);
bool quiet();


}  // namespace bitfsck::cli
