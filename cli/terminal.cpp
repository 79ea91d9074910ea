#include "terminal.hpp"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace bitfsck::cli {
namespace {

bool colours_enabled() {
    static const bool enabled = stdout_is_terminal() && std::getenv("NO_COLOR") == nullptr;
    return enabled;
}

std::string wrap(std::string_view code, std::string_view s) {
    if (!colours_enabled()) return std::string(s);
    return std::string("\x1b[") + std::string(code) + "m" + std::string(s) + "\x1b[0m";
}

}  // namespace

bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }
bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

std::string red(std::string_view s) { return wrap("31;1", s); }
std::string yellow(std::string_view s) { return wrap("33", s); }
std::string green(std::string_view s) { return wrap("32", s); }
std::string bold(std::string_view s) { return wrap("1", s); }

void print_error(std::string_view message) { std::cerr << "bitfsck: error: " << message << "\n"; }
void print_warning(std::string_view message) { std::cerr << "bitfsck: warning: " << message << "\n"; }

namespace {

std::atomic<bool> g_interrupted{false};
std::atomic<bool> g_quiet{false};

extern "C" void bitfsck_cli_on_interrupt(int) {
    g_interrupted.store(true);
    std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process at once
}

std::string count_text(std::uint64_t n, ProgressUnit u) {
    return u == ProgressUnit::Bytes ? human_bytes(n) : std::to_string(n);
}

}  // namespace

void install_interrupt_handler() { std::signal(SIGINT, bitfsck_cli_on_interrupt); }
bool interrupted() { return g_interrupted.load(); }
const std::atomic<bool>& interrupt_flag() { return g_interrupted; }
void set_quiet(bool q) { g_quiet.store(q); }
bool quiet() { return g_quiet.load(); }

std::string progress_amount(const Progress& p) {
    std::string s = count_text(p.done, p.unit);
    if (p.total) s += "/" + count_text(p.total, p.unit);
    if (p.unit != ProgressUnit::Bytes) s += " " + std::string(progress_unit_name(p.unit));
    return s;
}

ProgressLine::ProgressLine(std::string label) : label_(std::move(label)), terminal_(stderr_is_terminal()) {}

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::update(const Progress& p) {
    if (quiet()) return;
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    const bool complete = p.total && p.done >= p.total;
    // A terminal redraws often; a log file gets a line every few seconds, the first after five
    // (short work leaves no lines) and none at 100% (the result follows).
    if (terminal_) {
        if (drawn_ && now - last_ < std::chrono::milliseconds(100) && !complete) return;
    } else {
        if (last_ == std::chrono::steady_clock::time_point{}) {
            last_ = now;
            return;
        }
        if (complete || now - last_ < std::chrono::seconds(5)) return;
    }
    last_ = now;
    std::string line = label_;
    if (p.total) line += " " + std::to_string(static_cast<int>(100.0 * static_cast<double>(p.done) / static_cast<double>(p.total))) + "%";
    line += " " + progress_amount(p);
    if (!p.label.empty()) line += " " + p.label.substr(0, 60);
    if (terminal_) std::fprintf(stderr, "\r\x1b[K%s", line.c_str());
    else std::fprintf(stderr, "bitfsck: %s\n", line.c_str());
    std::fflush(stderr);
    drawn_ = terminal_;
}

void ProgressLine::update(std::uint64_t done, std::uint64_t total, std::string_view detail) {
    update(Progress{done, total, ProgressUnit::Bytes, std::string(detail)});
}

ProgressCallback ProgressLine::callback() {
    return [this](const Progress& p) {
        update(p);
        return !interrupted();
    };
}

void ProgressLine::finish() {
    std::lock_guard lock(mutex_);
    if (terminal_ && drawn_) {
        std::fprintf(stderr, "\r\x1b[K");
        std::fflush(stderr);
        drawn_ = false;
    }
}

}  // namespace bitfsck::cli
