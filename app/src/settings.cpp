#include "bitfsck/app/settings.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "bitfsck/app/app_state.hpp"
#include "bitfsck/io/atomic_write.hpp"

namespace bitfsck::app {

namespace fs = std::filesystem;

std::optional<fs::path> config_dir() {
    // XDG Base Directory: an empty or relative XDG_CONFIG_HOME is to be ignored.
    if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg && *xdg && fs::path(xdg).is_absolute())
        return fs::path(xdg) / "bitfsck";
    if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".config" / "bitfsck";
    return std::nullopt;
}

std::vector<std::string> load_recent(const fs::path& dir) {
    std::ifstream in(dir / "recent.json", std::ios::binary);
    if (!in) return {};
    std::ostringstream text;
    text << in.rdbuf();
    return recent_from_json(text.str());
}

void save_recent(const fs::path& dir, const std::vector<std::string>& recent) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw io::FileError(dir.string() + ": " + ec.message());
    io::write_file_atomically(dir / "recent.json", recent_to_json(recent));
}

}  // namespace bitfsck::app
