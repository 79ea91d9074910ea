#pragma once
// Helpers shared by the tests: where the fixtures are, temporary folders, running commands.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace bitfsck::test {

inline std::filesystem::path source_dir() { return BITFSCK_SOURCE_DIR; }
inline std::filesystem::path samples_dir() { return source_dir() / "sample_ckpts"; }
inline std::filesystem::path cli_path() { return BITFSCK_CLI; }
inline std::string python() { return BITFSCK_PYTHON; }

inline nlohmann::json read_json(const std::filesystem::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
}

inline std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A fresh temporary folder, removed when the object goes out of scope.
class TempDir {
public:
    TempDir() {
        std::random_device rd;
        path_ = std::filesystem::temp_directory_path() / ("bitfsck-test-" + std::to_string(rd()) + std::to_string(rd()));
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

struct CommandResult {
    int exit_code = -1;
    std::string out;  // stdout
    std::string err;  // stderr
};

// Runs a shell command line, capturing stdout and stderr through temporary files.
inline CommandResult run_command(const std::string& command_line) {
    TempDir tmp;
    auto out = tmp / "stdout", err = tmp / "stderr";
    std::string full = command_line + " >'" + out.string() + "' 2>'" + err.string() + "' </dev/null";
    int status = std::system(full.c_str());
    CommandResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_text(out);
    r.err = read_text(err);
    return r;
}

inline std::string quote(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

}  // namespace bitfsck::test

namespace bitfsck::test {
// Keeps the file's key order (expected values list tensors in state-dict order).
inline nlohmann::ordered_json read_ordered_json(const std::filesystem::path& p) {
    std::ifstream in(p);
    return nlohmann::ordered_json::parse(in);
}
}  // namespace bitfsck::test
