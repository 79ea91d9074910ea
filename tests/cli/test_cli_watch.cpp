// bitfsck watch: a run folder followed while a writer fills it, judged as `bitfsck timeline`
// judges the finished run.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "support.hpp"

namespace fs = std::filesystem;
using namespace bitfsck::test;
using nlohmann::json;

namespace {

std::vector<fs::path> run_checkpoints() {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(samples_dir() / "run"))
        if (e.path().extension() == ".pt") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
}

std::vector<json> json_lines(const std::string& out) {
    std::vector<json> events;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) events.push_back(json::parse(line));
    return events;
}

std::vector<json> of_kind(const std::vector<json>& events, const std::string& kind) {
    std::vector<json> out;
    for (const auto& e : events)
        if (e["event"] == kind) out.push_back(e);
    return out;
}

// What `bitfsck timeline` says of the finished run: the reference the watch must agree with.
struct Reference {
    json timeline;
    int exit_code = -1;
};
const Reference& reference() {
    static const Reference r = [] {
        auto res = run_command(quote(cli_path()) + " timeline --json " + quote(samples_dir() / "run"));
        return Reference{json::parse(res.out), res.exit_code};
    }();
    return r;
}

std::string filename(const json& path) { return fs::path(path.get<std::string>()).filename().string(); }

// The watch's verdict for every step equals the timeline's, and its one onset is the timeline's.
void check_against_timeline(const std::vector<json>& events, bool whole_run) {
    const json& t = reference().timeline;
    std::map<std::int64_t, std::string> verdicts;
    for (const auto& p : t["points"]) verdicts[p["step"].get<std::int64_t>()] = p["verdict"];
    for (const auto& e : of_kind(events, "checkpoint")) {
        const auto step = e["point"]["step"].get<std::int64_t>();
        INFO("step " << step);
        CHECK(e["point"]["verdict"] == verdicts.at(step));
    }
    const auto onsets = of_kind(events, "onset");
    REQUIRE(onsets.size() == 1);
    CHECK(onsets[0]["step"] == t["onset_step"]);
    CHECK(filename(onsets[0]["file"]) == filename(t["onset_file"]));
    CHECK(filename(onsets[0]["last_healthy_file"]) == filename(t["last_healthy_file"]));
    CHECK_FALSE(onsets[0]["layer_roles"].empty());
    CHECK_FALSE(onsets[0]["reasons"].empty());
    if (whole_run) CHECK(of_kind(events, "checkpoint").size() == t["points"].size());
}

}  // namespace

TEST_CASE("cli watch: a folder filled while watched, one checkpoint half-written for a while, is judged as timeline judges the run", "[cli][watch]") {
    const auto files = run_checkpoints();
    REQUIRE(files.size() == 7);
    TempDir dir;
    // The writer, as training jobs write: most checkpoints to a temporary name and renamed
    // (transformers, bitfsck), one in place in two halves with a pause longer than --settle
    // between them (torch.save to the final name), and a token file beside them.
    std::thread writer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        fs::copy_file(samples_dir() / "run" / "val.bin", dir / "val.bin");
        for (std::size_t i = 0; i < files.size(); ++i) {
            const std::string bytes = read_text(files[i]);
            const fs::path final_name = dir / files[i].filename().string();
            if (i == 3) {
                std::ofstream out(final_name, std::ios::binary);
                out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
                out.flush();
                std::this_thread::sleep_for(std::chrono::milliseconds(1500));
                out.write(bytes.data() + bytes.size() / 2, static_cast<std::streamsize>(bytes.size() - bytes.size() / 2));
            } else {
                const fs::path temporary = dir / ("." + files[i].filename().string() + ".tmp");
                write_bytes(temporary, bytes);
                fs::rename(temporary, final_name);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(400));
        }
    });
    const auto r = run_command(quote(cli_path()) + " watch --json --settle 0.4 --poll 0.2 --idle-exit 3 --broken-after 30 " + quote(dir.path()));
    writer.join();
    INFO(r.out << r.err);
    const auto events = json_lines(r.out);
    // Every complete checkpoint once, the half-written one never called broken.
    CHECK(of_kind(events, "unreadable").empty());
    std::multiset<std::string> scanned;
    for (const auto& e : of_kind(events, "checkpoint")) scanned.insert(filename(e["input"]));
    std::multiset<std::string> expected;
    for (const auto& f : files) expected.insert(f.filename().string());
    CHECK(scanned == expected);
    check_against_timeline(events, true);
    CHECK(r.exit_code == reference().exit_code);
}

TEST_CASE("cli watch: --until-collapse stops at the onset with the scan's code, and polling alone finds the same", "[cli][watch]") {
    TempDir dir;
    for (const auto& f : run_checkpoints()) fs::copy_file(f, dir / f.filename().string());
    const auto r = run_command(quote(cli_path()) + " watch --json --no-inotify --until-collapse --idle-exit 30 --settle 0.2 --poll 0.1 " + quote(dir.path()));
    INFO(r.out << r.err);
    const auto events = json_lines(r.out);
    REQUIRE_FALSE(events.empty());
    CHECK(events.back()["event"] == "onset");
    check_against_timeline(events, false);
    const json& t = reference().timeline;
    for (const auto& e : of_kind(events, "checkpoint")) CHECK(e["point"]["step"].get<int>() <= t["onset_step"].get<int>());
    std::string onset_verdict;
    for (const auto& p : t["points"])
        if (p["step"] == t["onset_step"]) onset_verdict = p["verdict"];
    CHECK(r.exit_code == (onset_verdict == "collapsed" ? 5 : 4));

    // The human form says the same in words.
    const auto text = run_command(quote(cli_path()) + " watch --until-collapse --idle-exit 30 --settle 0.2 --poll 0.1 " + quote(dir.path()));
    CHECK(text.exit_code == r.exit_code);
    CHECK(text.out.find("collapse onset at step " + std::to_string(t["onset_step"].get<int>())) != std::string::npos);
    CHECK(text.out.find("go back to: ") != std::string::npos);
    CHECK(text.out.find(filename(t["last_healthy_file"])) != std::string::npos);
}

TEST_CASE("cli watch: a checkpoint that stays truncated is reported once, naming it, and a missing folder is one line, exit 2", "[cli][watch]") {
    TempDir dir;
    const auto files = run_checkpoints();
    fs::copy_file(files[0], dir / files[0].filename().string());
    const std::string bytes = read_text(files[1]);
    write_bytes(dir / files[1].filename().string(), bytes.substr(0, bytes.size() / 3));
    const auto r = run_command(quote(cli_path()) + " watch --json --settle 0.2 --poll 0.1 --idle-exit 1 " + quote(dir.path()));
    INFO(r.out << r.err);
    const auto events = json_lines(r.out);
    const auto unreadable = of_kind(events, "unreadable");
    REQUIRE(unreadable.size() == 1);
    CHECK(unreadable[0]["error"].get<std::string>().find(files[1].filename().string()) != std::string::npos);
    CHECK(of_kind(events, "checkpoint").size() == 1);
    CHECK(r.exit_code == 2);

    const auto missing = run_command(quote(cli_path()) + " watch --idle-exit 1 " + quote(dir / "nope"));
    CHECK(missing.exit_code == 2);
    CHECK(missing.err.find("nope: no such folder") != std::string::npos);
    CHECK(std::count(missing.err.begin(), missing.err.end(), '\n') == 1);
    const auto file = run_command(quote(cli_path()) + " watch --idle-exit 1 " + quote(dir / files[0].filename().string()));
    CHECK(file.exit_code == 2);
    CHECK(file.err.find("not a folder") != std::string::npos);
    const auto help = run_command(quote(cli_path()) + " watch --help");
    CHECK(help.exit_code == 0);
    CHECK(help.out.find("Example:") != std::string::npos);
}
