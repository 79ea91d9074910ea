#include "verdicts.hpp"

#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {

std::string in_verdict_colour(analysis::Verdict v, std::string_view text) {
    switch (v) {
        case analysis::Verdict::Collapsed: return red(text);
        case analysis::Verdict::Degraded:
        case analysis::Verdict::Unknown: return yellow(text);
        case analysis::Verdict::Healthy: break;
    }
    return green(text);
}

std::string coloured_verdict(analysis::Verdict v) { return in_verdict_colour(v, analysis::verdict_name(v)); }

int verdict_exit_code(analysis::Verdict v) {
    switch (v) {
        case analysis::Verdict::Collapsed: return kCollapsed;
        case analysis::Verdict::Degraded: return kDegraded;
        case analysis::Verdict::Unknown: return kUnknown;
        case analysis::Verdict::Healthy: break;
    }
    return kOk;
}

void set_verdict_exit_code(analysis::Verdict v) { set_exit_code(verdict_exit_code(v)); }

}  // namespace bitfsck::cli
