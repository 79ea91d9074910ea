#include "subcommands.hpp"

#include <atomic>

#include "bitfsck/io/error.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

std::atomic<int> g_exit_code{kOk};

int rank(int code) {
    switch (code) {
        case kUsage: return 7;
        case kUnreadable: return 6;
        case kSecurity: return 5;
        case kCollapsed: return 4;
        case kDegraded: return 3;
        case kUnknown: return 2;
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

int exit_for_parse_error(CLI::App& app, const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help / version / the error
    return code == 0 ? kOk : kUsage;
}

void run_reporting_errors(const std::function<void()>& body, int other_errors) {
    try {
        body();
    } catch (const io::FormatError& e) {
        print_error(e.what());
        set_exit_code(kUnreadable);
    } catch (const CLI::Error&) {
        throw;
    } catch (const Error& e) {
        print_error(e.what());
        set_exit_code(other_errors);
    }
}

}  // namespace bitfsck::cli
