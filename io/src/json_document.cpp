#include "bitfsck/io/json_document.hpp"

#include <string>

namespace bitfsck {

std::string_view tool_version() { return BITFSCK_PROJECT_VERSION; }

nlohmann::ordered_json json_document(int schema_version, std::string_view version) {
    nlohmann::ordered_json j;
    j["schema_version"] = schema_version;
    j["tool"] = {{"name", std::string(kToolName)}, {"version", std::string(version.empty() ? tool_version() : version)}};
    return j;
}

}  // namespace bitfsck
