#pragma once
// How every JSON document bitfsck writes opens (docs/json-output.md): "schema_version", then
// "tool": {"name": "bitfsck", "version": ...}, whichever command or library wrote it.
#include <string_view>

#include <nlohmann/json.hpp>

namespace bitfsck {

inline constexpr std::string_view kToolName = "bitfsck";
std::string_view tool_version();  // CMake's project(VERSION)

// {"schema_version": schema_version, "tool": {"name": "bitfsck", "version": version or tool_version()}}
nlohmann::ordered_json json_document(int schema_version, std::string_view version = {});

}  // namespace bitfsck
