// bitfsck plan and resurrect as a user runs them, on the sample collapsed run with a short recipe
// (edited from `plan -o`, as a user would): stages, gates, resuming, replaying, the report.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <set>

#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

test::CommandResult run_bitfsck(const std::string& args) { return test::run_command(test::quote(test::cli_path()) + " " + args); }
const fs::path kRun = test::samples_dir() / "run";
std::string data_flags() {
    return " --tokens " + test::quote(kRun / "train.bin") + " --val-tokens " + test::quote(kRun / "val.bin");
}

// plan -o, then the edits: a short fine-tune, fewer evaluation windows, no baselines.
fs::path short_recipe(const test::TempDir& tmp, const std::function<void(nlohmann::json&)>& edit = {}) {
    const fs::path recipe = tmp / "recipe.json";
    const auto r = run_bitfsck("plan " + test::quote(kRun) + " --no-search --steps 8 -o " + test::quote(recipe));
    REQUIRE(r.exit_code == 0);
    auto j = test::read_json(recipe);
    j["eval_windows"] = 64;
    j["baselines"] = false;
    if (edit) edit(j);
    test::write_bytes(recipe, j.dump(2));
    return recipe;
}

}  // namespace

TEST_CASE("plan: the diagnosis and a recipe with reasons", "[resurrect][cli]") {
    // By default: one search stage over candidates, the budget from the run itself.
    const auto searched = run_bitfsck("plan " + test::quote(kRun) + " --json");
    INFO(searched.err);
    REQUIRE(searched.exit_code == 0);
    const auto sj = nlohmann::json::parse(searched.out);
    REQUIRE(sj["stages"].size() == 1);
    const auto& search = sj["stages"][0];
    CHECK(search["stage"] == "search");
    // Half the tokens the run trained after its last healthy checkpoint: (350 − 50) × 16 × 64 / 2.
    CHECK(search["params"]["steps"] == 150);
    CHECK(search["params"]["rungs"] == nlohmann::json({16, 50, 150}));
    CHECK(search["params"]["graft"]["roles"] == nlohmann::json({"mlp_gate", "mlp_up", "mlp_down"}));
    const auto& candidates = search["params"]["candidates"];
    REQUIRE(candidates.size() == 14);  // 2 starts × (3 regularizers × 2 strengths, and none) × the run's own learning rate
    std::set<std::string> starts, names;
    for (const auto& c : candidates) {
        starts.insert(c["start"].get<std::string>());
        names.insert(c["name"].get<std::string>());
        CHECK(c["finetune"]["lr"].get<double>() == 3e-3);  // config.train.lr of the run
        CHECK(c["finetune"]["schedule"] == "constant");    // so that a continued candidate is the longer run
    }
    CHECK(names.size() == candidates.size());
    REQUIRE(starts.size() == 2);
    CHECK(starts.count("graft") == 1);
    CHECK(std::any_of(starts.begin(), starts.end(), [](const std::string& s) { return s.find("step_000050.pt") != std::string::npos; }));
    CHECK(search["reason"].get<std::string>().find("best third kept at each rung") != std::string::npos);
    const auto budget_diag = std::find_if(sj["diagnosis"].begin(), sj["diagnosis"].end(),
                                          [](const nlohmann::json& d) { return d.get<std::string>().rfind("fine-tuning budget", 0) == 0; });
    REQUIRE(budget_diag != sj["diagnosis"].end());
    CHECK(budget_diag->get<std::string>().find("153600 tokens") != std::string::npos);
    // --budget-tokens: whole steps of batch × seq_len, rounded up.
    const auto budget = run_bitfsck("plan " + test::quote(kRun) + " --budget-tokens 20000 --json");
    REQUIRE(budget.exit_code == 0);
    CHECK(nlohmann::json::parse(budget.out)["stages"][0]["params"]["steps"] == 20);

    const auto r = run_bitfsck("plan " + test::quote(kRun) + " --no-search --json");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["latest"].get<std::string>().find("step_000350.pt") != std::string::npos);
    CHECK(j["last_healthy"].get<std::string>().find("step_000050.pt") != std::string::npos);
    REQUIRE(j["stages"].size() == 2);
    CHECK(j["stages"][0]["stage"] == "graft");  // attention kept learning after step 50
    CHECK(j["stages"][0]["params"]["roles"] == nlohmann::json({"mlp_gate", "mlp_up", "mlp_down"}));
    CHECK(j["stages"][1]["stage"] == "finetune");
    CHECK(j["stages"][1]["params"]["reg"][0].get<std::string>().rfind("double-well", 0) == 0);
    for (const auto& s : j["stages"]) CHECK_FALSE(s["reason"].get<std::string>().empty());
    // The baseline continues the run as it was configured: its coupled L2 on the MLPs.
    CHECK(j["baseline_finetune"]["reg"][0] == "decay:lambda=30,coupled,roles=mlp");

    const auto help = run_bitfsck("resurrect --help");
    CHECK(help.exit_code == 0);
    CHECK(help.out.find("Example") != std::string::npos);
    CHECK(run_bitfsck("plan --help").out.find("Example") != std::string::npos);

    const auto healthy = run_bitfsck("plan " + test::quote(kRun / "step_000050.pt"));
    CHECK(healthy.exit_code == 0);
    CHECK(healthy.out.find("every checkpoint is healthy") != std::string::npos);
}

TEST_CASE("resurrect: a short recipe, a gate that rejects, resume and replay", "[resurrect][cli]") {
    test::TempDir tmp;
    // A destructive stage between graft and finetune: rank-1 attention. Its validation loss rises,
    // so the gate rejects it and the fine-tune starts from the graft.
    const fs::path recipe = short_recipe(tmp, [](nlohmann::json& j) {
        nlohmann::json svd = {{"stage", "svd"},
                              {"params", {{"step", {{"rule", "rank"}, {"rank", 1}}}, {"selection", {{"roles", {"attn"}}, {"layers", nlohmann::json::array()}, {"match", nlohmann::json::array()}}}}},
                              {"reason", "test: a stage that must be rejected"}};
        j["stages"].insert(j["stages"].begin() + 1, svd);
    });
    const fs::path out = tmp / "out";
    const std::string cmd = "resurrect " + test::quote(kRun) + data_flags() + " --recipe " + test::quote(recipe) + " -o " + test::quote(out);
    const auto r = run_bitfsck(cmd);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    const auto log = test::read_json(out / "resurrection.json");
    CHECK(log["complete"] == true);
    REQUIRE(log["stages"].size() == 3);
    CHECK(log["stages"][0]["accepted"] == true);
    CHECK(log["stages"][1]["stage"] == "svd");
    CHECK(log["stages"][1]["accepted"] == false);
    CHECK(log["stages"][1]["after"]["val_loss"].get<double>() > log["stages"][0]["after"]["val_loss"].get<double>() + 0.01);
    CHECK(log["stages"][2]["input"] == log["stages"][0]["output"]);  // the rejected stage was skipped
    CHECK(log["stages"][2]["accepted"] == true);
    CHECK(fs::exists(out / "stage_2_svd" / "out.pt"));  // kept for inspection
    CHECK(fs::exists(out / "resurrected.pt"));
    CHECK(r.out.find("REJECTED") != std::string::npos);
    const std::string html = test::read_text(out / "report.html");
    CHECK(html.find("<svg") != std::string::npos);
    CHECK(html.find("<script") == std::string::npos);
    CHECK(html.find("src=") == std::string::npos);
    CHECK(html.find("IPMR") != std::string::npos);

    // The same command again on the finished folder: nothing is rerun, nothing rewritten.
    const std::string log_before = test::read_text(out / "resurrection.json");
    const auto again = run_bitfsck(cmd);
    INFO(again.out << again.err);
    REQUIRE(again.exit_code == 0);
    CHECK(again.out.find("already complete") != std::string::npos);
    CHECK(test::read_text(out / "resurrection.json") == log_before);

    // Replay into another folder: the same resurrected.pt, bit for bit.
    const auto replay = run_bitfsck("resurrect --replay " + test::quote(out / "resurrection.json") + " -o " + test::quote(tmp / "replay"));
    INFO(replay.out << replay.err);
    CHECK(replay.exit_code == 0);
    CHECK(replay.out.find("identical") != std::string::npos);
    CHECK(test::read_text(tmp / "replay" / "resurrected.pt") == test::read_text(out / "resurrected.pt"));
}

TEST_CASE("resurrect: Ctrl-C in the fine-tune, then the same command continues it to the uninterrupted result", "[resurrect][cli]") {
    test::TempDir tmp;
    const fs::path out = tmp / "out";
    // Planned now (no --recipe): the rerun must recognise the plan it made before as the same run.
    const std::string cmd = "resurrect " + test::quote(kRun) + data_flags() + " --no-search --steps 40 -o " + test::quote(out);
    const fs::path metrics = out / "stage_2_finetune" / "out.pt.metrics.jsonl";
    // Interrupted once the fine-tune has taken a few steps (its metrics file: one line per step).
    const auto first = test::run_command(
        "( " + test::quote(test::cli_path()) + " " + cmd + " & pid=$!; "
        "while [ \"$(cat " + test::quote(metrics) + " 2>/dev/null | wc -l)\" -lt 5 ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done; "
        "kill -INT $pid; wait $pid; echo \"exit=$?\" )");
    INFO(first.out << first.err);
    REQUIRE(first.out.find("exit=130") != std::string::npos);
    auto log = test::read_json(out / "resurrection.json");
    CHECK(log["complete"] == false);
    REQUIRE(log["stages"].size() == 1);  // the graft; the fine-tune was interrupted
    const auto state = test::read_json(out / "stage_2_finetune" / "out.pt.state.json");
    const auto saved_at = state["step"].get<std::int64_t>();
    CHECK(saved_at >= 4);
    CHECK(saved_at < 40);

    const auto second = run_bitfsck(cmd);
    INFO(second.out << second.err);
    log = test::read_json(out / "resurrection.json");
    // 40 steps need not beat every baseline: 7 says so (healthy, not better than the best one).
    REQUIRE(second.exit_code == (log["beats_best_baseline"].get<bool>() ? 0 : 7));
    CHECK(log["complete"] == true);
    REQUIRE(log["stages"].size() == 2);
    CHECK(log["stages"][0]["decisions"].back() == "resumed: completed by an earlier run");
    CHECK(test::read_text(out / "stage_2_finetune" / "finetune.out").find("\"steps_done\": 40") != std::string::npos);
    // One metrics line per step, each once: the resumed fine-tune continued, it did not restart.
    std::ifstream lines(metrics);
    std::vector<std::int64_t> steps;
    for (std::string l; std::getline(lines, l);) steps.push_back(nlohmann::json::parse(l)["step"].get<std::int64_t>());
    CHECK(steps.size() == 41);
    CHECK(std::is_sorted(steps.begin(), steps.end()));

    // The stage's one options document, run uninterrupted, gives the same weights bit for bit.
    const fs::path straight = tmp / "straight.pt";
    const auto direct = run_bitfsck("finetune --options " + test::quote(out / "stage_2_finetune" / "finetune_options.json") + " -o " +
                                    test::quote(straight) + " --json");
    INFO(direct.err);
    REQUIRE(direct.exit_code == 0);
    CHECK(test::read_text(straight) == test::read_text(out / "stage_2_finetune" / "out.pt"));

    const auto third = run_bitfsck(cmd);
    CHECK(third.exit_code == second.exit_code);  // a finished folder answers as the run did
    CHECK(third.out.find("already complete") != std::string::npos);
}

TEST_CASE("finetune --options: one document for the run, typos and mixed flags refused", "[resurrect][cli]") {
    test::TempDir tmp;
    nlohmann::json doc = {{"input", (kRun / "step_000050.pt").string()}, {"tokens", (kRun / "train.bin").string()},
                          {"val_tokens", (kRun / "val.bin").string()}, {"steps", 2}, {"seq_len", 32}, {"batch", 2}, {"val_windows", 4},
                          {"optimizer", {{"lr", 1e-4}}}};
    test::write_bytes(tmp / "good.json", doc.dump());
    auto r = run_bitfsck("finetune --options " + test::quote(tmp / "good.json") + " -o " + test::quote(tmp / "a.pt") + " --json");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(nlohmann::json::parse(r.out)["steps_done"] == 2);
    // What ran is what the document said, defaults for the rest (lr_other follows lr, as on the command line).
    const auto state = test::read_json(tmp / "a.pt.state.json");
    CHECK(state["options"]["steps"] == 2);
    CHECK(state["options"]["optimizer"]["lr_other"].get<double>() == 1e-4);
    CHECK(state["options"]["optimizer"]["kind"] == "adamw");

    doc["stpes"] = 3;
    test::write_bytes(tmp / "typo.json", doc.dump());
    r = run_bitfsck("finetune --options " + test::quote(tmp / "typo.json") + " -o " + test::quote(tmp / "b.pt"));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("typo.json: unknown key 'stpes'") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp / "b.pt"));

    r = run_bitfsck("finetune --options " + test::quote(tmp / "good.json") + " -o " + test::quote(tmp / "c.pt") + " --steps 5");
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("--steps cannot be added") != std::string::npos);
    test::write_bytes(tmp / "broken.json", "{\"steps\": ");
    r = run_bitfsck("finetune --options " + test::quote(tmp / "broken.json") + " -o " + test::quote(tmp / "d.pt"));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("broken.json: not JSON") != std::string::npos);
}

TEST_CASE("resurrect --control: the share of a never-collapsed run's quality the result recovers, at what token cost", "[resurrect][cli]") {
    test::TempDir tmp;
    const fs::path recipe = short_recipe(tmp);
    const auto rj = test::read_json(recipe);
    const std::int64_t tokens_per_step = rj["batch"].get<std::int64_t>() * rj["seq_len"].get<std::int64_t>();
    // A control folder: its member named like the run's latest checkpoint is the one compared.
    const fs::path control = tmp / "control_run";
    fs::create_directories(control);
    fs::copy_file(kRun / "step_000100.pt", control / "step_000100.pt");
    fs::copy_file(kRun / "step_000050.pt", control / "step_000350.pt");
    const fs::path out = tmp / "out";
    auto r = run_bitfsck("resurrect " + test::quote(kRun) + data_flags() + " --recipe " + test::quote(recipe) + " --control " +
                         test::quote(control) + " -o " + test::quote(out));
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    auto log = test::read_json(out / "resurrection.json");
    REQUIRE(log["control"].is_object());
    CHECK(fs::path(log["control"]["checkpoint"].get<std::string>()).filename() == "step_000350.pt");
    CHECK(log["control"]["tokens"].get<std::int64_t>() == 8 * tokens_per_step);
    // That control (step 50 of the same run) is worse than the collapsed start: nothing to recover.
    CHECK(log["control"]["measurement"]["val_loss"].get<double>() > log["start"]["val_loss"].get<double>());
    CHECK(log["control"]["recovered"].is_null());
    CHECK(r.out.find("was not worse than the control") != std::string::npos);
    CHECK(test::read_text(out / "report.html").find("was not worse than the control") != std::string::npos);

    // The first result as the control of the same recipe: it recovers all of the gap, exactly.
    const fs::path out2 = tmp / "out2";
    r = run_bitfsck("resurrect " + test::quote(kRun) + data_flags() + " --recipe " + test::quote(recipe) + " --control " +
                    test::quote(out / "resurrected.pt") + " -o " + test::quote(out2));
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    log = test::read_json(out2 / "resurrection.json");
    REQUIRE(log["control"]["recovered"].is_number());
    CHECK(log["control"]["recovered"].get<double>() == Approx(1.0).margin(1e-12));
    CHECK(log["control"]["comparison"]["outcome"] == "no significant difference");
    CHECK(log["control"]["comparison"]["result_loss"] == log["control"]["comparison"]["baseline_loss"]);
    CHECK(r.out.find("closes 100% of the gap") != std::string::npos);

    // A control folder without checkpoints fails at once, before any stage.
    fs::create_directories(tmp / "empty");
    r = run_bitfsck("resurrect " + test::quote(kRun) + data_flags() + " --recipe " + test::quote(recipe) + " --control " +
                    test::quote(tmp / "empty") + " -o " + test::quote(tmp / "out3"));
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("no checkpoints in the control folder") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp / "out3" / "measure_start"));
}

TEST_CASE("resurrect: a search halves its candidates on selection windows, deterministically, and trains the winner the whole budget",
          "[resurrect][cli]") {
    test::TempDir tmp;
    const fs::path recipe = tmp / "recipe.json";
    REQUIRE(run_bitfsck("plan " + test::quote(kRun) + " --steps 9 -o " + test::quote(recipe)).exit_code == 0);
    auto j = test::read_json(recipe);
    j["baselines"] = false;
    test::write_bytes(recipe, j.dump(2));
    REQUIRE(j["stages"][0]["params"]["rungs"] == nlohmann::json({1, 3, 9}));
    auto resurrect = [&](const fs::path& out) {
        // 9 steps do not make up for the graft's loss: --keep-going keeps the stage the gate rejects.
        const auto r = run_bitfsck("resurrect " + test::quote(kRun) + data_flags() + " --recipe " + test::quote(recipe) + " --keep-going -o " +
                                   test::quote(out));
        INFO(r.out << r.err);
        REQUIRE(r.exit_code == 0);
        CHECK(r.out.find("won") != std::string::npos);  // the candidate table
        return test::read_json(out / "resurrection.json");
    };
    const auto log = resurrect(tmp / "a");
    REQUIRE(log["stages"].size() == 1);
    const auto& stage = log["stages"][0];
    const auto& search = stage["search"];
    // 468 windows of 64 tokens: the last quarter scores, the first 351 hold every claim.
    CHECK(log["windows"]["claims"] == 351);
    CHECK(search["selection_windows"] == log["windows"]["selection"]);
    CHECK(search["selection_windows"].get<std::int64_t>() >= 116);
    CHECK(log["start"]["window_losses"].size() == 351);
    // 14 candidates at 1 step, the best ⌈14/3⌉ = 5 at 3 steps, the best 2 at 9; one winner.
    std::vector<int> reached(4, 0);
    int winners = 0;
    std::string winner_folder;
    for (std::size_t i = 0; i < search["candidates"].size(); ++i) {
        const auto& c = search["candidates"][i];
        reached[c["rungs"].size()] += 1;
        if (c["winner"].get<bool>()) {
            ++winners;
            CHECK(c["rungs"].back()["steps"] == 9);
            winner_folder = "candidate_" + std::string(i + 1 < 10 ? "0" : "") + std::to_string(i + 1);
        } else {
            CHECK(c["note"].get<std::string>().find("stopped after") == 0);
        }
    }
    CHECK(reached == std::vector<int>({0, 9, 3, 2}));
    CHECK(winners == 1);
    CHECK(fs::path(stage["output"].get<std::string>()).parent_path().filename() == winner_folder);
    CHECK(search["tokens"].get<std::int64_t>() == (9 * 1 + 3 * 3 + 2 * 9) * 16 * 64);

    // The selection windows' tokens, as numpy reads the .npy: the tail of val.bin after the claims'
    // 351 windows of 64 (and one token more, so no token is in both).
    const auto np = test::run_command(test::python() + " -c \"import numpy, sys; a = numpy.load(sys.argv[1]); v = numpy.fromfile(sys.argv[2], '<u2'); "
                                      "assert a.dtype == numpy.int64 and a.ndim == 1; assert (a == v[351 * 64 + 1:]).all(); print(len(a))\" " +
                                      test::quote(tmp / "a" / "stage_1_search" / "selection_tokens.npy") + " " + test::quote(kRun / "val.bin"));
    INFO(np.err);
    REQUIRE(np.exit_code == 0);
    CHECK(std::stoi(np.out) == 30000 - 351 * 64 - 1);

    // The winner, continued from rung to rung, is the run of the whole budget: its options document
    // with steps 9, trained straight, gives the same weights bit for bit.
    const fs::path stage_dir = tmp / "a" / "stage_1_search";
    auto doc = test::read_json(stage_dir / winner_folder / "finetune_options.json");
    CHECK(doc["val_tokens"].get<std::string>().find("selection_tokens.npy") != std::string::npos);
    doc["steps"] = 9;
    test::write_bytes(tmp / "straight.json", doc.dump());
    const auto straight = run_bitfsck("finetune --options " + test::quote(tmp / "straight.json") + " -o " + test::quote(tmp / "straight.pt") + " --json");
    INFO(straight.err);
    REQUIRE(straight.exit_code == 0);
    CHECK(test::read_text(tmp / "straight.pt") == test::read_text(stage["output"].get<std::string>()));

    // Deterministic for a seed: the same search in another folder scores and chooses the same.
    const auto again = resurrect(tmp / "b");
    CHECK(again["stages"][0]["search"]["candidates"] == search["candidates"]);
    CHECK(again["stages"][0]["after"]["val_loss"] == stage["after"]["val_loss"]);
    CHECK(test::read_text(tmp / "b" / "report.html").find("Candidates of stage 1") != std::string::npos);

    // Three candidates: one survives the first rung and goes straight on to the whole budget.
    auto three = test::read_json(recipe);
    auto& cands = three["stages"][0]["params"]["candidates"];
    cands = nlohmann::json::array({cands[0], cands[6], cands[13]});
    test::write_bytes(recipe, three.dump(2));
    const auto lone = resurrect(tmp / "c");
    int lone_winners = 0;
    for (const auto& c : lone["stages"][0]["search"]["candidates"]) {
        if (!c["winner"].get<bool>()) {
            CHECK(c["rungs"].size() == 1);
            continue;
        }
        ++lone_winners;
        REQUIRE(c["rungs"].size() == 2);
        CHECK(c["rungs"][0]["steps"] == 1);
        CHECK(c["rungs"][1]["steps"] == 9);
    }
    CHECK(lone_winners == 1);
}

TEST_CASE("resurrect: bad input gets one line and a non-zero exit", "[resurrect][cli]") {
    test::TempDir tmp;
    auto r = run_bitfsck("resurrect " + test::quote(kRun) + " -o " + test::quote(tmp / "o"));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("needs") != std::string::npos);
    test::write_bytes(tmp / "bad.json", "{\"schema_version\": 1}");
    r = run_bitfsck("resurrect " + test::quote(kRun) + data_flags() + " --recipe " + test::quote(tmp / "bad.json") + " -o " + test::quote(tmp / "o"));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("bad.json: not a resurrection recipe") != std::string::npos);
    r = run_bitfsck("plan " + test::quote(tmp.path()));
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("no checkpoint files") != std::string::npos);
}
