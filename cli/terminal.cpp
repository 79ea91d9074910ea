#include "terminal.hpp"

#include <unistd.h>

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

ProgressLine::ProgressLine(std::string label) : label_(std::move(label)), enabled_(stderr_is_terminal()) {}

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::update(std::uint64_t done, std::uint64_t total, std::string_view detail) {
    if (!enabled_) return;
    std::lock_guard lock(mutex_);
    auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100) && done < total) return;
    last_ = now;
    int percent = total ? static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total)) : 0;
    std::string line = label_ + " " + std::to_string(percent) + "% " + human_bytes(done) + "/" + human_bytes(total);
    if (!detail.empty()) line += " " + std::string(detail.substr(0, 60));
    std::fprintf(stderr, "\r\x1b[K%s", line.c_str());
    std::fflush(stderr);
    drawn_ = true;
}

void ProgressLine::finish() {
    std::lock_guard lock(mutex_);
    if (enabled_ && drawn_) {
        std::fprintf(stderr, "\r\x1b[K");
        std::fflush(stderr);
        drawn_ = false;
    }
}

std::string human_bytes(std::uint64_t bytes) {
    const char* units[] = {"B", "KB", "MB", "GB", "TB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1000.0 && u < 4) {
        v /= 1000.0;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

}  // namespace bitfsck::cli
