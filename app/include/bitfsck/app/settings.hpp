#pragma once
// Where the app keeps what it remembers between runs: the ImGui window layout (imgui.ini) and
// the recent files (recent.json), in $XDG_CONFIG_HOME/bitfsck or ~/.config/bitfsck.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace bitfsck::app {

// nullopt when neither XDG_CONFIG_HOME nor HOME is set.
std::optional<std::filesystem::path> config_dir();

// Missing or damaged files give an empty list (a broken settings file must not stop the app).
std::vector<std::string> load_recent(const std::filesystem::path& dir);
// Written atomically (io::write_file_atomically); creates dir. Throws bitfsck::Error.
void save_recent(const std::filesystem::path& dir, const std::vector<std::string>& recent);

}  // namespace bitfsck::app
