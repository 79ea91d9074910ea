// Every input the fuzz targets (tests/fuzz/) ever found a bug with, kept under
// tests/fuzz/regressions/<target>/ and replayed through the same entry point with this build's
// compiler, so a robustness regression fails the normal test run (and its ASan pass) without clang.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "fuzz/fuzz_entries.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
namespace fuzz = bitfsck::fuzz;

TEST_CASE("every fuzz regression input is refused or read cleanly by its entry point") {
    const fs::path root = bitfsck::test::source_dir() / "tests" / "fuzz" / "regressions";
    std::size_t replayed = 0;
    for (const auto& target : fuzz::kTargets) {
        const fs::path dir = root / std::string(target.name);
        if (!fs::is_directory(dir)) continue;
        for (const auto& entry : fs::directory_iterator(dir)) {
            if (!entry.is_regular_file() || entry.path().filename() == "README.md") continue;
            const std::string bytes = bitfsck::test::read_text(entry.path());
            INFO(std::string(target.name) << ": " << entry.path().filename().string());
            // Only bitfsck::Error may leave the reader; run_one absorbs that and nothing else.
            CHECK_NOTHROW(fuzz::run_one(target, {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()}));
            ++replayed;
        }
    }
    CHECK(replayed > 0);
}

TEST_CASE("the fuzz entry points read the fixtures they are seeded with") {
    // The harness itself must reach the readers: a healthy checkpoint opens and decodes through it.
    const auto sample = bitfsck::test::read_text(bitfsck::test::samples_dir() / "views.pt");
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(sample.data()), sample.size());
    CHECK_NOTHROW(fuzz::fuzz_checkpoint(bytes));
    CHECK_THROWS_AS(fuzz::fuzz_checkpoint(bytes.first(bytes.size() / 2)), bitfsck::Error);
}
