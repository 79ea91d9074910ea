#pragma once
// The repair log as JSON: written in one place, read back by replay.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "bitfsck/repair/repair.hpp"

namespace bitfsck::repair {

nlohmann::ordered_json to_json(const RepairLog& log);
nlohmann::ordered_json to_json(const StepSpec& step);
nlohmann::ordered_json to_json(const TensorSelection& selection);

// The parts of a log that replay needs. Throws bitfsck::Error naming the key that is missing or wrong.
StepSpec step_from_json(const nlohmann::json& j);
TensorSelection selection_from_json(const nlohmann::json& j);

// Atomic write of to_json(log) beside the output.
void write_repair_log(const RepairLog& log, const std::filesystem::path& path);

}  // namespace bitfsck::repair
