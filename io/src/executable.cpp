#include "bitfsck/io/executable.hpp"

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace bitfsck::io {
namespace fs = std::filesystem;

namespace {
bool runnable(const fs::path& p) { return !p.empty() && ::access(p.c_str(), X_OK) == 0 && !fs::is_directory(p); }
}  // namespace

fs::path self_executable(const char* fallback) {
    std::error_code ec;
    fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return fallback ? fs::path(fallback) : fs::path();
    return self;
}

fs::path find_executable(std::string_view name, const char* env_override) {
    if (env_override)
        if (const char* env = std::getenv(env_override); env && *env && runnable(env)) return env;
    const fs::path self = self_executable();
    if (!self.empty())
        for (const fs::path& p : {self.parent_path() / name, self.parent_path().parent_path() / "cli" / name})
            if (runnable(p)) return p;
    if (const char* path = std::getenv("PATH")) {
        const std::string s = path;
        std::size_t start = 0;
        while (start <= s.size()) {
            const auto end = s.find(':', start);
            const fs::path p = fs::path(s.substr(start, end == std::string::npos ? std::string::npos : end - start)) / name;
            if (runnable(p)) return p;
            if (end == std::string::npos) break;
            start = end + 1;
        }
    }
    return {};
}

}  // namespace bitfsck::io
