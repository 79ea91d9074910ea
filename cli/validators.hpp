#pragma once
// Checks for option values whose messages read as sentences: CLI11's own PositiveNumber says
// "Value 0 not in range 0 to 1.79769e+308".
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <string>

namespace bitfsck::cli {

// A number above 0 ("must be above 0").
inline CLI::Validator positive() {
    return CLI::Validator(
        [](std::string& s) -> std::string {
            char* end = nullptr;
            const double v = std::strtod(s.c_str(), &end);
            if (end == s.c_str() || *end != '\0') return "'" + s + "' is not a number";
            return v > 0 ? std::string() : "must be above 0, not " + s;
        },
        "> 0");
}

// A number at or above 0 ("must not be negative").
inline CLI::Validator non_negative() {
    return CLI::Validator(
        [](std::string& s) -> std::string {
            char* end = nullptr;
            const double v = std::strtod(s.c_str(), &end);
            if (end == s.c_str() || *end != '\0') return "'" + s + "' is not a number";
            return v >= 0 ? std::string() : "must not be negative, not " + s;
        },
        ">= 0");
}

}  // namespace bitfsck::cli
