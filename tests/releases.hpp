#pragma once
// Release-shaped fixtures written by the producers' own code (sample_ckpts/make_releases.py:
// gguf-py, huggingface_hub + safetensors), generated once per build into the test binary folder.
// Only test files that are registered where those packages exist (test_gguf_py_*,
// test_safetensors_py_*) use them.
#include <filesystem>
#include <random>
#include <string>

#include <catch2/catch.hpp>

#include "support.hpp"

namespace bitfsck::test {

// "gguf" or "sharded": the folder make_releases.py filled, made on first use. Several test
// processes may ask at once: each generates into a folder of its own and the first rename wins.
inline std::filesystem::path releases(const std::string& kind) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::path(BITFSCK_TEST_BINARY_DIR) / "releases" / kind;
    if (fs::exists(dir / ".complete")) return dir;
    fs::create_directories(dir.parent_path());
    std::random_device rd;
    const fs::path tmp = dir.parent_path() / (kind + ".tmp-" + std::to_string(rd()));
    auto r = run_command(python() + " " + quote(samples_dir() / "make_releases.py") + " " + kind + " " + quote(tmp));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    write_bytes(tmp / ".complete", "");
    std::error_code ec;
    fs::rename(tmp, dir, ec);
    if (ec) fs::remove_all(tmp, ec);  // another process was first
    REQUIRE(fs::exists(dir / ".complete"));
    return dir;
}

// A copy of a fixture folder to break on purpose.
inline std::filesystem::path copy_of(const std::filesystem::path& folder, const TempDir& tmp) {
    const auto to = tmp / folder.filename().string();
    std::filesystem::copy(folder, to, std::filesystem::copy_options::recursive);
    return to;
}

}  // namespace bitfsck::test
