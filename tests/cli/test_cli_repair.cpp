// bitfsck repair as a user runs it: help with examples, exit codes, one-line errors, the log, the
// replay, and a fresh `bitfsck scan` of what it wrote.
#include <catch2/catch.hpp>

#include <fstream>

#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

test::CommandResult run_bitfsck(const std::string& args) { return test::run_command(test::quote(test::cli_path()) + " " + args); }
const fs::path kRun = test::samples_dir() / "run";

}  // namespace

TEST_CASE("cli repair: every subcommand has help with an example", "[cli][repair]") {
    for (const char* sub : {"", " svd", " align", " inflate", " pick", " replay"}) {
        const auto r = run_bitfsck(std::string("repair") + sub + " --help");
        INFO(sub);
        CHECK(r.exit_code == 0);
        CHECK(r.out.find("Example") != std::string::npos);
        CHECK(r.out.find("bitfsck repair") != std::string::npos);
    }
}

TEST_CASE("cli repair inflate, then a fresh scan and a replay", "[cli][repair]") {
    test::TempDir tmp;
    const auto out = tmp / "inflated.pt";
    const auto r = run_bitfsck("repair inflate " + test::quote(kRun / "step_000350.pt") + " -o " + test::quote(out) + " --like " +
                           test::quote(kRun / "step_000050.pt") + " --zeros 0.3");
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("layers.0.mlp.up_proj.weight") != std::string::npos);
    CHECK(r.out.find("fresh scan of the output") != std::string::npos);
    CHECK(fs::exists(tmp / "inflated.pt.repair.json"));

    const auto scan = run_bitfsck("scan --json " + test::quote(out));
    const auto j = nlohmann::json::parse(scan.out).at(0);  // one report per input file
    int mlp = 0;
    for (const auto& t : j["tensors"]) {
        const std::string name = t["name"];
        if (name.find(".mlp.") == std::string::npos) continue;
        CHECK(t["ternary"]["zero"].get<double>() <= 0.3);
        ++mlp;
    }
    CHECK(mlp == 6);

    const auto replay = run_bitfsck("repair replay " + test::quote(tmp / "inflated.pt.repair.json") + " -o " + test::quote(tmp / "again.pt"));
    INFO(replay.out << replay.err);
    CHECK(replay.exit_code == 0);
    CHECK(replay.out.find("identical") != std::string::npos);

    const auto json = run_bitfsck("repair svd " + test::quote(kRun / "step_000350.pt") + " -o " + test::quote(tmp / "svd.pt") + " --json --rank 2");
    REQUIRE(json.exit_code == 5);  // written, and still collapsed: the fresh scan's code
    const auto log = nlohmann::json::parse(json.out);
    CHECK(log["schema_version"] == 1);
    CHECK(log["tensors"][0]["svd"]["rank"] == 2);
}

TEST_CASE("cli repair: refusals and bad input give one line and a non-zero exit", "[cli][repair]") {
    test::TempDir tmp;
    const auto input = tmp / "in.pt";
    fs::copy_file(kRun / "step_000350.pt", input);
    const auto size = fs::file_size(input);

    auto r = run_bitfsck("repair svd " + test::quote(input) + " -o " + test::quote(input));
    CHECK(r.exit_code == 2);  // the output would replace an input: an output error
    CHECK(r.err.find("in.pt") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(fs::file_size(input) == size);

    {
        std::ifstream in(input, std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), {});
        std::ofstream(tmp / "truncated.pt", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    }
    r = run_bitfsck("repair align " + test::quote(tmp / "truncated.pt") + " -o " + test::quote(tmp / "x.pt"));
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("truncated.pt") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_FALSE(fs::exists(tmp / "x.pt"));

    r = run_bitfsck("repair svd " + test::quote(input) + " -o " + test::quote(tmp / "y.pt") + " --rank 2 --energy 0.9");
    CHECK(r.exit_code == 1);
    r = run_bitfsck("repair svd " + test::quote(input) + " -o " + test::quote(tmp / "y.pt") + " --roles mlpp");
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("unknown role") != std::string::npos);
    r = run_bitfsck("repair svd " + test::quote(kRun / "step_000050.pt") + " -o " + test::quote(tmp / "y.pt"));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("no degraded or collapsed") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp / "y.pt"));
}

TEST_CASE("cli repair pick: the last healthy checkpoint with its reasons", "[cli][repair]") {
    test::TempDir tmp;
    const auto r = run_bitfsck("repair pick " + test::quote(kRun) + " -o " + test::quote(tmp / "start.pt"));
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("step_000050.pt") != std::string::npos);
    CHECK(r.out.find("last healthy") != std::string::npos);
    CHECK(fs::file_size(tmp / "start.pt") == fs::file_size(kRun / "step_000050.pt"));
}
