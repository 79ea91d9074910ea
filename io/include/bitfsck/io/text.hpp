#pragma once
// The small text formatters every part of bitfsck prints with, shared by the CLI, the app and the
// libraries' messages (as Tracy shares one formatting helper between its GUI and its tools).
#include <cstdint>
#include <string>
#include <vector>

namespace bitfsck {

// printf-style formatting of one number: fmt("%.3g", 0.000677) -> "0.000677".
std::string fmt(const char* printf_format, double value);
// "[172, 64]" (PyTorch order), "[]" for a scalar.
std::string shape_text(const std::vector<std::int64_t>& shape);
// "1.3 MB", "400 B": decimal units, one decimal above bytes.
std::string human_bytes(std::uint64_t bytes);

}  // namespace bitfsck
