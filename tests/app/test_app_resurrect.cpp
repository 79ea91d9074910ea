// The resurrection view's logic without a window: default paths beside a run, the executable its
// stages call, the live metrics file it plots, and reading a finished log.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "bitfsck/app/resurrect_view.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::app;
namespace fs = std::filesystem;

TEST_CASE("resurrect view: defaults beside the run, never over it", "[app][resurrect]") {
    ResurrectView v;
    const fs::path run = test::samples_dir() / "run";
    default_resurrect_paths(v, run);
    CHECK(v.run == run.string());
    CHECK(v.tokens == (run / "train.bin").string());
    CHECK(v.val_tokens == (run / "val.bin").string());
    CHECK(v.out_dir == run.string() + ".resurrected");
    // Fields the user filled are kept.
    ResurrectView w;
    w.out_dir = "/tmp/mine";
    w.tokens = "t.bin";
    default_resurrect_paths(w, run / "step_000350.pt");
    CHECK(w.out_dir == "/tmp/mine");
    CHECK(w.tokens == "t.bin");
    CHECK(w.val_tokens == (run / "val.bin").string());
    CHECK(w.run == (run / "step_000350.pt").string());
}

TEST_CASE("resurrect view: the bitfsck executable and the newest metrics file", "[app][resurrect]") {
    ::setenv("BITFSCK", test::cli_path().c_str(), 1);
    CHECK(find_bitfsck_executable() == test::cli_path());
    ::unsetenv("BITFSCK");

    test::TempDir tmp;
    CHECK_FALSE(live_metrics_file(tmp.path()));
    CHECK_FALSE(read_resurrection_log(tmp.path()));
    fs::create_directories(tmp / "stage_2_finetune");
    fs::create_directories(tmp / "baseline_original");
    test::write_bytes(tmp / "stage_2_finetune" / "out.pt.metrics.jsonl", "{\"step\": 0}\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    test::write_bytes(tmp / "baseline_original" / "out.pt.metrics.jsonl", "{\"step\": 0}\n");
    test::write_bytes(tmp / "baseline_original" / "out.pt", "x");
    const auto f = live_metrics_file(tmp.path());
    REQUIRE(f);
    CHECK(*f == tmp / "baseline_original" / "out.pt.metrics.jsonl");

    test::write_bytes(tmp / "resurrection.json", "{\"schema_version\": 1}");
    CHECK_FALSE(read_resurrection_log(tmp.path()));  // not a complete log: nothing to show, no crash
}

TEST_CASE("resurrect view: a recipe that does not parse is not run", "[app][resurrect]") {
    ResurrectView v;
    JobRegistry jobs;
    v.recipe_text = "{ not json";
    CHECK_FALSE(start_resurrect_run(jobs, v));
    CHECK(v.recipe_error.find("not valid JSON") != std::string::npos);
    v.recipe_text = "{\"schema_version\": 1, \"stages\": []}";
    CHECK_FALSE(start_resurrect_run(jobs, v));
    CHECK(v.recipe_error.find("not a resurrection recipe") != std::string::npos);
    CHECK(v.run_job == nullptr);
    CHECK(jobs.size() == 0);
}
