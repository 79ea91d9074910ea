// `bitfsck inspect` and `bitfsck scan` report the same security findings for every hostile
// checkpoint (both read Checkpoint::findings(); this holds them to it through the command line).
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "support.hpp"

namespace fs = std::filesystem;
namespace test = bitfsck::test;
using nlohmann::json;

namespace {

// (global, severity, called, offset, reason) of each finding, in the order reported.
json keys_of(const json& findings, const char* offset_key) {
    json out = json::array();
    for (const auto& f : findings)
        out.push_back({f.at("global"), f.at("severity"), f.at("called"), f.at(offset_key), f.at("reason")});
    return out;
}

}  // namespace

TEST_CASE("inspect and scan agree on the security findings of every hostile checkpoint", "[security][cli]") {
    std::size_t with_findings = 0, files = 0;
    for (const auto& entry : fs::directory_iterator(test::samples_dir() / "hostile")) {
        if (entry.path().extension() != ".pt") continue;
        const std::string file = entry.path().string();
        INFO(entry.path().filename().string());
        ++files;
        const auto inspect = test::run_command(test::quote(test::cli_path()) + " inspect --json " + test::quote(file));
        const auto scan = test::run_command(test::quote(test::cli_path()) + " scan --json " + test::quote(file));
        INFO(inspect.err << scan.err);
        if (inspect.exit_code == 2) {
            // Unreadable: both say so.
            CHECK(scan.exit_code == 2);
            CHECK_FALSE(scan.err.empty());
            continue;
        }
        const json i = json::parse(inspect.out), s = json::parse(scan.out);
        REQUIRE(i.size() == 1);
        REQUIRE(s.size() == 1);
        const json a = keys_of(i[0].at("security"), "offset"), b = keys_of(s[0].at("security"), "offset");
        CHECK(a == b);
        if (!a.empty()) {
            ++with_findings;
            CHECK(inspect.exit_code == 3);
            CHECK(scan.exit_code == 3);
        }
    }
    CHECK(files >= 10);
    CHECK(with_findings >= 5);
}

TEST_CASE("a storage record longer than its declared elements is a warning in inspect and scan", "[security][cli]") {
    const std::string file = (test::samples_dir() / "hostile" / "numel_declared_smaller.pt").string();
    const auto inspect = test::run_command(test::quote(test::cli_path()) + " inspect --json " + test::quote(file));
    REQUIRE(inspect.exit_code == 0);
    const json i = json::parse(inspect.out);
    REQUIRE(i[0].contains("warnings"));
    CHECK_THAT(i[0].at("warnings")[0].get<std::string>(), Catch::Contains("storage '0'"));
    // scan shows the checkpoint's warnings in its report, text and JSON alike.
    const auto scan = test::run_command(test::quote(test::cli_path()) + " scan " + test::quote(file));
    CHECK_THAT(scan.out, Catch::Contains("warning") && Catch::Contains("storage '0': its record") && Catch::Contains("16 more"));
    const auto scan_json = test::run_command(test::quote(test::cli_path()) + " scan --json " + test::quote(file));
    const json s = json::parse(scan_json.out);
    REQUIRE(s[0].at("warnings").size() == 1);
    CHECK_THAT(s[0].at("warnings")[0].get<std::string>(), Catch::Contains("storage '0': its record"));
}
