#pragma once
// How a verdict shows, the same in every command: its colour on a terminal (red collapsed, yellow
// degraded or unknown, green healthy; plain where terminal.hpp's colours are off) and its exit code.
#include <string>
#include <string_view>

#include "bitfsck/io/error.hpp"  // before report.hpp, which uses bitfsck::Error
#include "bitfsck/analysis/report.hpp"

namespace bitfsck::cli {

std::string in_verdict_colour(analysis::Verdict v, std::string_view text);
std::string coloured_verdict(analysis::Verdict v);  // the verdict's name, coloured

// kCollapsed, kDegraded, kUnknown or kOk (subcommands.hpp's table); the second gives it to set_exit_code().
int verdict_exit_code(analysis::Verdict v);
void set_verdict_exit_code(analysis::Verdict v);

}  // namespace bitfsck::cli
