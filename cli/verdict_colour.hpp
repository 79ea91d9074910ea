#pragma once
// The one colouring of verdicts on a terminal, for every command that prints them: red collapsed,
// yellow degraded or unknown, green healthy (plain text where terminal.hpp's colours are off).
#include <string>
#include <string_view>

#include "bitfsck/io/error.hpp"  // before report.hpp, which uses bitfsck::Error
#include "bitfsck/analysis/report.hpp"

namespace bitfsck::cli {

std::string in_verdict_colour(analysis::Verdict v, std::string_view text);
std::string coloured_verdict(analysis::Verdict v);  // the verdict's name, coloured

}  // namespace bitfsck::cli
