#pragma once
// Terminal niceties shared by the subcommands: colours only on a terminal, a progress line on
// stderr only when stderr is a terminal, and one-line error reports.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

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

// A single self-overwriting progress line on stderr ("scan  42% 170/400 MB layers.3..."),
// redrawn at most every 100 ms; silent when stderr is not a terminal. Thread-safe.
class ProgressLine {
public:
    explicit ProgressLine(std::string label);
    ~ProgressLine();
    void update(std::uint64_t done, std::uint64_t total, std::string_view detail = {});
    void finish();

private:
    std::mutex mutex_;
    std::string label_;
    bool enabled_ = false;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point last_{};
};

std::string human_bytes(std::uint64_t bytes);

}  // namespace bitfsck::cli
