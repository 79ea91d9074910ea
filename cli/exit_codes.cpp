// The one mapping from what went wrong to the exit code, for every subcommand (README's table).
#include <algorithm>
#include <atomic>

#include "bitfsck/io/error.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

std::atomic<int> g_exit_code{kOk};

// Which code wins when several apply: an interruption, then a usage error, then unreadable input,
// then security findings, then the verdicts from worst to mildest.
int rank(int code) {
    switch (code) {
        case kInterrupted: return 9;
        case kInternal: return 8;
        case kUsage: return 7;
        case kUnreadable: return 6;
        case kSecurity: return 5;
        case kCollapsed: return 4;
        case kDegraded: return 3;
        case kUnknown: return 2;
        case kNotBetterThanBaseline: return 1;
        default: return code == kOk ? 0 : 1;
    }
}

}  // namespace

void set_exit_code(int code) {
    int current = g_exit_code.load();
    while (rank(code) > rank(current) && !g_exit_code.compare_exchange_weak(current, code)) {
    }
}

int last_exit_code() { return g_exit_code.load(); }

int exit_code_for(const Error& e) {
    switch (e.kind()) {
        case ErrorKind::Usage:
        case ErrorKind::Other: return kUsage;
        case ErrorKind::Unreadable:
        case ErrorKind::File:
        case ErrorKind::Output:
        case ErrorKind::Model: return kUnreadable;
        case ErrorKind::Cancelled: return kInterrupted;
    }
    return kUsage;
}

void report(const Error& e) {
    if (e.kind() == ErrorKind::Cancelled) print_error("interrupted");
    else print_error(e.what());
    set_exit_code(exit_code_for(e));
}

int exit_for_parse_error(CLI::App& app, const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help / version / the error
    return code == 0 ? kOk : kUsage;
}

void run_reporting_errors(const std::function<void()>& body) {
    try {
        body();
    } catch (const CLI::Error&) {
        throw;
    } catch (const Error& e) {
        report(e);
    }
}

std::string closest_name(const std::string& typed, const std::vector<std::string>& names) {
    // Levenshtein distance: 'scna' -> 'scan', 'timelien' -> 'timeline'.
    auto distance = [](const std::string& a, const std::string& b) {
        std::vector<std::size_t> row(b.size() + 1);
        for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
        for (std::size_t i = 1; i <= a.size(); ++i) {
            std::size_t diagonal = row[0];
            row[0] = i;
            for (std::size_t j = 1; j <= b.size(); ++j) {
                const std::size_t up = row[j];
                row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
                diagonal = up;
            }
        }
        return row[b.size()];
    };
    std::string best;
    std::size_t best_d = 3;  // more than two edits away is no suggestion
    for (const auto& n : names)
        if (const std::size_t d = distance(typed, n); d < best_d) best = n, best_d = d;
    return best;
}

}  // namespace bitfsck::cli
