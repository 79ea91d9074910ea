// run_tools: children side by side, never more than asked, results in the order of the jobs,
// and a cancel that interrupts the running ones and starts no more.
#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../../repair/src/tool_process.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using bitfsck::repair::run_tool;
using bitfsck::repair::run_tools;
using bitfsck::repair::ToolJob;
using bitfsck::test::TempDir;

namespace {

const fs::path kShell = "/bin/sh";

std::string read_all(const fs::path& p) {
    std::ifstream in(p);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// The most children running at once, from the '+' (started) and '-' (ended) marks they appended.
int most_at_once(const std::string& marks) {
    int now = 0, most = 0;
    for (char c : marks) {
        if (c == '+') most = std::max(most, ++now);
        if (c == '-') --now;
    }
    return most;
}

}  // namespace

TEST_CASE("run_tools runs at most `parallel` children at once and returns their runs in job order") {
    TempDir dir;
    const fs::path marks = dir.path() / "marks";
    for (int parallel : {1, 2, 3}) {
        std::ofstream(marks, std::ios::trunc).close();
        std::vector<ToolJob> jobs;
        for (int k = 0; k < 6; ++k)
            jobs.push_back({{"-c", "printf + >> '" + marks.string() + "'; sleep 0.15; printf - >> '" + marks.string() + "'; echo job" +
                                      std::to_string(k) + "; echo err" + std::to_string(k) + " >&2; exit " + std::to_string(k)},
                            dir.path(),
                            "job" + std::to_string(k)});
        const auto runs = run_tools(kShell, jobs, parallel);
        REQUIRE(runs.size() == jobs.size());
        for (int k = 0; k < 6; ++k) {
            CHECK(runs[k].exit_code == k);
            CHECK(runs[k].out == "job" + std::to_string(k) + "\n");
            CHECK(runs[k].err == "err" + std::to_string(k) + "\n");
            CHECK(read_all(dir.path() / ("job" + std::to_string(k) + ".out")) == runs[k].out);
        }
        const std::string m = read_all(marks);
        CHECK(m.size() == 12);
        INFO("marks " << m << " with parallel " << parallel);
        // Each child sleeps 0.15 s and the next starts within microseconds of a free slot, so the
        // slots are full; never more than asked.
        CHECK(most_at_once(m) == parallel);
    }
}

TEST_CASE("run_tool is one job: exit code, stdout and stderr of the child") {
    TempDir dir;
    const auto r = run_tool(kShell, {"-c", "echo out; echo err >&2; exit 4"}, dir.path(), "one");
    CHECK(r.exit_code == 4);
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
    CHECK_THROWS(run_tool(dir.path() / "no-such-program", {}, dir.path(), "missing"));
}

TEST_CASE("a cancel interrupts the running children and starts no more") {
    TempDir dir;
    std::vector<ToolJob> jobs;
    for (int k = 0; k < 4; ++k) jobs.push_back({{"-c", "exec sleep 20"}, dir.path(), "sleeper" + std::to_string(k)});
    std::atomic<bool> cancel{false};
    int polls = 0;
    const auto runs = run_tools(kShell, jobs, 2, [&] { if (++polls == 2) cancel = true; }, &cancel);
    REQUIRE(runs.size() == 4);
    // The first two were running and got SIGINT (a signal death reads as -1); the others never started.
    for (int k = 0; k < 4; ++k) CHECK(runs[k].exit_code == -1);
    CHECK(fs::exists(dir.path() / "sleeper0.out"));
    CHECK(fs::exists(dir.path() / "sleeper1.out"));
    CHECK_FALSE(fs::exists(dir.path() / "sleeper2.out"));
    CHECK_FALSE(fs::exists(dir.path() / "sleeper3.out"));
}
