// io::FolderWatch: a checkpoint is handed out once it has held still for the settling time, once
// per version, and never while it grows; temporaries are not checkpoints; removals are named.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bitfsck/io/error.hpp"
#include "bitfsck/io/folder_watch.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using bitfsck::io::FolderWatch;

namespace {

// Polls until `watch` hands something out or `limit` passes.
std::vector<fs::path> next_settled(FolderWatch& watch, std::chrono::milliseconds limit = 3s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end)
        if (auto ready = watch.settled(); !ready.empty()) return ready;
    return {};
}

}  // namespace

TEST_CASE("FolderWatch hands out a checkpoint once it has settled, once per version", "[io][watch]") {
    const std::string bytes = bitfsck::test::read_text(bitfsck::test::samples_dir() / "run" / "step_000050.pt");
    for (bool inotify : {true, false}) {
        INFO("inotify " << inotify);
        bitfsck::test::TempDir dir;
        FolderWatch watch(dir.path(), {50ms, 1000ms, inotify});
        CHECK(watch.settled().empty());

        // Written in two parts with a pause shorter than the settling time: not handed out in between.
        {
            std::ofstream out(dir / "step_000100.pt", std::ios::binary);
            out.write(bytes.data(), 1000);
            out.flush();
            const auto until = std::chrono::steady_clock::now() + 200ms;
            while (std::chrono::steady_clock::now() < until) CHECK(watch.settled().empty());
            out.write(bytes.data() + 1000, static_cast<std::streamsize>(bytes.size() - 1000));
        }
        CHECK(watch.unsettled() == true);
        const auto first = next_settled(watch);
        REQUIRE(first.size() == 1);
        CHECK(first[0].filename() == "step_000100.pt");
        CHECK(watch.unsettled() == false);
        CHECK(next_settled(watch, 1200ms).empty());  // once

        // Temporaries, hidden names and non-checkpoints are not handed out.
        bitfsck::test::write_bytes(dir / ".step_000200.pt.tmp", bytes);
        fs::create_directories(dir / "tmp-checkpoint-300");
        bitfsck::test::write_bytes(dir / "tmp-checkpoint-300" / "model.safetensors", "x");
        bitfsck::test::write_bytes(dir / "notes.txt", "hello");
        CHECK(next_settled(watch, 1500ms).empty());

        // Renamed in: handed out; the earlier one rewritten: handed out again; removed: named once.
        fs::rename(dir / ".step_000200.pt.tmp", dir / "step_000200.pt");
        const auto renamed = next_settled(watch);
        REQUIRE(renamed.size() == 1);
        CHECK(renamed[0].filename() == "step_000200.pt");
        bitfsck::test::write_bytes(dir / "step_000100.pt", bytes + std::string(16, '\0'));
        const auto rewritten = next_settled(watch);
        REQUIRE(rewritten.size() == 1);
        CHECK(rewritten[0].filename() == "step_000100.pt");
        fs::remove(dir / "step_000200.pt");
        watch.settled();
        const auto removed = watch.take_removed();
        REQUIRE(removed.size() == 1);
        CHECK(removed[0].filename() == "step_000200.pt");
        CHECK(watch.take_removed().empty());
        CHECK(watch.uses_inotify() == inotify);
    }
}

TEST_CASE("FolderWatch refuses a missing folder and a file, naming them", "[io][watch]") {
    bitfsck::test::TempDir dir;
    CHECK_THROWS_WITH(FolderWatch(dir / "missing"), Catch::Contains("missing: no such folder"));
    bitfsck::test::write_bytes(dir / "f.pt", "x");
    CHECK_THROWS_WITH(FolderWatch(dir / "f.pt"), Catch::Contains("f.pt: not a folder"));
}

TEST_CASE("input_signature changes when any file of a model folder changes", "[io][watch]") {
    bitfsck::test::TempDir dir;
    fs::create_directories(dir / "checkpoint-5");
    bitfsck::test::write_bytes(dir / "checkpoint-5" / "model-00001-of-00002.safetensors", "aaaa");
    bitfsck::test::write_bytes(dir / "checkpoint-5" / "model-00002-of-00002.safetensors", "bbbb");
    const auto before = bitfsck::io::input_signature(dir / "checkpoint-5");
    CHECK(before.files == 2);
    CHECK(before.bytes == 8);
    std::this_thread::sleep_for(10ms);
    bitfsck::test::write_bytes(dir / "checkpoint-5" / "model-00002-of-00002.safetensors", "bbbc");
    CHECK_FALSE(bitfsck::io::input_signature(dir / "checkpoint-5") == before);
}
