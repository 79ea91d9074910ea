// kill -9 of finetune and resurrect at random moments and in the middle of a save: the outputs'
// final names hold nothing or complete files, the inputs are untouched, and `finetune --resume`
// (or the same resurrect command again) reaches the uninterrupted run's weights bit for bit.
#include <catch2/catch.hpp>

#include <filesystem>
#include <random>

#include "checkpoint_values.hpp"
#include "kill_support.hpp"
#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

const fs::path kRun = test::samples_dir() / "run";

std::vector<std::string> finetune_argv(const fs::path& out) {
    return {test::cli_path().string(), "finetune", (kRun / "step_000050.pt").string(), "-o", out.string(), "--tokens",
            (kRun / "train.bin").string(), "--val-tokens", (kRun / "val.bin").string(), "--val-windows", "8", "--seq-len", "32",
            "--threads", "1", "--batch", "4", "--steps", "12", "--save-every", "3", "--eval-every", "3", "--no-compare-run"};
}

std::vector<std::int64_t> metric_steps(const fs::path& metrics) {
    std::ifstream in(metrics);
    std::vector<std::int64_t> steps;
    for (std::string l; std::getline(in, l);) steps.push_back(nlohmann::json::parse(l)["step"].get<std::int64_t>());
    return steps;
}

}  // namespace

TEST_CASE("kill -9 of finetune, at random and mid-save: --resume reaches the uninterrupted weights bit for bit", "[finetune][cli][kill]") {
    const std::string input_bytes = test::read_text(kRun / "step_000050.pt");
    test::TempDir ref;
    const auto straight = test::spawn_and_kill(finetune_argv(ref / "ft.pt"), [] { return false; });
    REQUIRE(straight.exit_code == 0);
    const std::string expected = test::read_text(ref / "ft.pt");
    const auto expected_steps = metric_steps(ref / "ft.pt.metrics.jsonl");
    const auto took = std::chrono::duration_cast<std::chrono::microseconds>(straight.ran);

    std::mt19937 seeds(7);
    int killed = 0;
    for (int attempt = 0; attempt < 5; ++attempt) {
        test::TempDir dir;
        const fs::path out = dir / "ft.pt";
        const bool mid_save = attempt >= 3;
        // Start-up (LibTorch, reading) takes part of the time: the moments are spread over the whole run.
        const auto delay = std::chrono::microseconds(std::uniform_int_distribution<long long>(took.count() / 4, took.count())(seeds));
        auto moment = mid_save ? test::while_saving(dir.path()) : test::after(delay);
        if (attempt == 4) {
            // The second save, not the first: a resume then has a state to continue from.
            moment = [dir = dir.path(), saving = test::while_saving(dir.path())] {
                return fs::exists(dir / "ft.pt.state.json") && saving();
            };
        }
        const auto k = test::spawn_and_kill(finetune_argv(out), moment);
        INFO("attempt " << attempt << (mid_save ? " (mid-save)" : " after " + std::to_string(delay.count()) + " us"));
        killed += k.killed;
        CHECK(test::read_text(kRun / "step_000050.pt") == input_bytes);
        if (fs::exists(out)) CHECK(test::checkpoint_values(out).size() == 24);  // complete, readable
        std::vector<std::string> argv = finetune_argv(out);
        if (fs::exists(fs::path(out.string() + ".state.json")))
            argv = {test::cli_path().string(), "finetune", "--resume", "-o", out.string()};
        const auto again = test::spawn_and_kill(argv, [] { return false; });
        REQUIRE(again.exit_code == 0);
        CHECK(test::read_text(out) == expected);
        CHECK(metric_steps(fs::path(out.string() + ".metrics.jsonl")) == expected_steps);
    }
    CHECK(killed >= 3);
}

TEST_CASE("finetune --resume after a save cut between its state file and its JSON: the state file alone is the resume point", "[finetune][cli][kill]") {
    // The window a kill -9 can hit at random: OUT.state.pt renamed into place at step 6, OUT and
    // OUT.state.json still those of step 3. Made here on purpose: a complete 6-step run whose JSON
    // is set back to step 3 and whose OUT is replaced by an older file. Constant schedule, so the
    // 6-step run's state is the 9-step run's at step 6.
    test::TempDir tmp;
    auto argv = [&](const fs::path& out, int steps) {
        std::string cmd = test::quote(test::cli_path()) + " finetune " + test::quote(kRun / "step_000050.pt") + " -o " + test::quote(out) +
                          " --tokens " + test::quote(kRun / "train.bin") + " --val-tokens " + test::quote(kRun / "val.bin") +
                          " --val-windows 8 --seq-len 32 --threads 1 --batch 4 --save-every 3 --eval-every 3 --no-compare-run --schedule constant" +
                          " --steps " + std::to_string(steps);
        return cmd;
    };
    REQUIRE(test::run_command(argv(tmp / "straight.pt", 9)).exit_code == 0);
    const fs::path cut = tmp / "cut.pt";
    REQUIRE(test::run_command(argv(cut, 6)).exit_code == 0);
    const std::string six = test::read_text(cut);
    auto state = test::read_json(fs::path(cut.string() + ".state.json"));
    state["step"] = 3;
    state["options"]["steps"] = 9;
    test::write_bytes(fs::path(cut.string() + ".state.json"), state.dump(2));
    fs::copy_file(kRun / "step_000100.pt", cut, fs::copy_options::overwrite_existing);  // OUT: not the state's

    const auto r = test::run_command(test::quote(test::cli_path()) + " finetune --resume -o " + test::quote(cut) + " --json");
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("the last save was interrupted") != std::string::npos);
    CHECK(test::read_text(cut) == test::read_text(tmp / "straight.pt"));
    CHECK(test::read_json(fs::path(cut.string() + ".state.json"))["step"] == 9);
    CHECK(metric_steps(fs::path(cut.string() + ".metrics.jsonl")) == metric_steps(tmp / "straight.pt.metrics.jsonl"));

    // The same cut at the end of a run: nothing left to train, OUT and the JSON are rewritten from the state.
    const fs::path end = tmp / "end.pt";
    REQUIRE(test::run_command(argv(end, 6)).exit_code == 0);
    auto end_state = test::read_json(fs::path(end.string() + ".state.json"));
    end_state["step"] = 3;
    test::write_bytes(fs::path(end.string() + ".state.json"), end_state.dump(2));
    fs::copy_file(kRun / "step_000100.pt", end, fs::copy_options::overwrite_existing);
    const auto again = test::run_command(test::quote(test::cli_path()) + " finetune --resume -o " + test::quote(end) + " --json");
    INFO(again.out << again.err);
    REQUIRE(again.exit_code == 0);
    CHECK(test::read_text(end) == six);
    CHECK(test::read_json(fs::path(end.string() + ".state.json"))["step"] == 6);

    // A state file behind its JSON is not what an interrupted save leaves: refused, nothing written.
    end_state["step"] = 9;
    end_state["options"]["steps"] = 12;
    test::write_bytes(fs::path(end.string() + ".state.json"), end_state.dump(2));
    const auto behind = test::run_command(test::quote(test::cli_path()) + " finetune --resume -o " + test::quote(end));
    CHECK(behind.exit_code != 0);
    CHECK(behind.err.find("holds step 6 but") != std::string::npos);
    CHECK(test::read_text(end) == six);
}

TEST_CASE("kill -9 of resurrect, at random and mid-save: the same command again reaches the uninterrupted result", "[resurrect][cli][kill]") {
    test::TempDir tmp;
    const fs::path recipe = tmp / "recipe.json";
    const auto plan = test::run_command(test::quote(test::cli_path()) + " plan " + test::quote(kRun) + " --steps 8 -o " + test::quote(recipe));
    REQUIRE(plan.exit_code == 0);
    auto j = test::read_json(recipe);
    j["eval_windows"] = 32;
    j["baselines"] = false;
    // The default plan's search (rungs of 1, 2 and 8 steps), cut to four candidates to keep the test
    // short: two stop after 1 step, one after 2, the winner continues alone to 8. --keep-going keeps
    // its output even though 8 steps do not pay back the graft.
    REQUIRE(j["stages"][0]["stage"] == "search");
    auto& candidates = j["stages"][0]["params"]["candidates"];
    nlohmann::json kept = nlohmann::json::array();
    for (std::size_t i : {std::size_t{0}, std::size_t{6}, std::size_t{7}, std::size_t{13}}) kept.push_back(candidates.at(i));
    candidates = kept;
    test::write_bytes(recipe, j.dump(2));
    auto argv = [&](const fs::path& out) {
        return std::vector<std::string>{test::cli_path().string(), "resurrect", kRun.string(), "--tokens", (kRun / "train.bin").string(),
                                        "--val-tokens", (kRun / "val.bin").string(), "--recipe", recipe.string(), "--keep-going", "-o", out.string()};
    };
    const auto straight = test::spawn_and_kill(argv(tmp / "ref"), [] { return false; });
    REQUIRE(straight.exit_code == 0);
    const std::string expected = test::read_text(tmp / "ref" / "resurrected.pt");
    const auto took = std::chrono::duration_cast<std::chrono::microseconds>(straight.ran);

    std::mt19937 seeds(11);
    int killed = 0;
    for (int attempt = 0; attempt < 3; ++attempt) {
        const fs::path out = tmp / ("out" + std::to_string(attempt));
        fs::create_directories(out);
        const bool mid_save = attempt == 2;
        const auto delay = std::chrono::microseconds(std::uniform_int_distribution<long long>(took.count() / 5, took.count())(seeds));
        const auto k = test::spawn_and_kill(argv(out), mid_save ? test::while_saving(out) : test::after(delay));
        INFO("attempt " << attempt << (mid_save ? " (mid-save)" : " after " + std::to_string(delay.count()) + " us"));
        killed += k.killed;
        if (fs::exists(out / "resurrection.json")) CHECK_NOTHROW(test::read_json(out / "resurrection.json"));
        const auto again = test::spawn_and_kill(argv(out), [] { return false; });
        REQUIRE(again.exit_code == 0);
        CHECK(test::read_text(out / "resurrected.pt") == expected);
    }
    CHECK(killed >= 2);
}
