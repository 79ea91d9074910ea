// bitfsck finetune as a user runs it: help, one-line errors, Ctrl-C and --resume, and two
// processes over c10d/Gloo on loopback giving the weights of one process with the same global batch.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "checkpoint_values.hpp"
#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

test::CommandResult run_bitfsck(const std::string& args) { return test::run_command(test::quote(test::cli_path()) + " " + args); }
const fs::path kRun = test::samples_dir() / "run";

std::string data_flags() {
    return " --tokens " + test::quote(kRun / "train.bin") + " --val-tokens " + test::quote(kRun / "val.bin") +
           " --val-windows 16 --seq-len 32 --threads 1";
}

std::vector<nlohmann::json> metric_lines(const fs::path& p) {
    std::ifstream in(p);
    std::vector<nlohmann::json> out;
    for (std::string l; std::getline(in, l);) out.push_back(nlohmann::json::parse(l));
    return out;
}

}  // namespace

TEST_CASE("cli finetune: help with an example, listed by bitfsck --help", "[finetune][cli]") {
    const auto r = run_bitfsck("finetune --help");
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("Example") != std::string::npos);
    CHECK(r.out.find("--reg") != std::string::npos);
    CHECK(r.out.find("torchrun") != std::string::npos);
    CHECK(run_bitfsck("--help").out.find("finetune") != std::string::npos);
}

TEST_CASE("cli finetune: bad input gets one line and a non-zero exit, and the input is never touched", "[finetune][cli]") {
    test::TempDir tmp;
    const fs::path start = kRun / "step_000050.pt";
    const std::string before = test::read_text(start);

    auto r = run_bitfsck("finetune " + test::quote(start) + " -o " + test::quote(tmp / "o.pt") + data_flags() + " --reg double-well:lambda");
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("--reg double-well:lambda: lambda= is not a number") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);

    r = run_bitfsck("finetune " + test::quote(start) + " -o " + test::quote(start) + data_flags() + " --steps 1");
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("step_000050.pt") != std::string::npos);
    CHECK(test::read_text(start) == before);

    r = run_bitfsck("finetune " + test::quote(start) + " -o " + test::quote(tmp / "o.safetensors") + data_flags());
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("name it *.pt") != std::string::npos);

    r = run_bitfsck("finetune " + test::quote(start) + " -o " + test::quote(tmp / "o.pt") + " --tokens " + test::quote(kRun / "train.bin") +
                    " --val-tokens " + test::quote(kRun / "val.bin") + " --seq-len 100000");
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("fewer validation tokens than one window") != std::string::npos);

    // An output that cannot be written is refused before any training, not after it.
    fs::create_directories(tmp / "a_folder");
    r = run_bitfsck("finetune " + test::quote(start) + " -o " + test::quote(tmp / "a_folder") + data_flags() + " --steps 100000");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("a_folder: is a folder") != std::string::npos);
    r = run_bitfsck("finetune " + test::quote(start) + " -o " + test::quote(tmp / "missing" / "o.pt") + data_flags() + " --steps 100000");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("does not exist") != std::string::npos);
    CHECK(fs::is_empty(tmp / "a_folder"));

    r = run_bitfsck("finetune --resume -o " + test::quote(tmp / "nothing.pt"));
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("nothing.pt.state.json") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp / "o.pt"));
}

TEST_CASE("cli finetune: Ctrl-C saves where it was, --resume finishes the run", "[finetune][cli]") {
    test::TempDir tmp;
    const fs::path out = tmp / "ft.pt";
    // Background jobs of a non-interactive shell start with SIGINT ignored; finetune installs its own handler.
    const std::string cmd = test::quote(test::cli_path()) + " finetune " + test::quote(kRun / "step_000050.pt") + " -o " + test::quote(out) +
                            data_flags() + " --batch 4 --steps 100000 --json > " + test::quote(tmp / "log") + " 2>&1 & pid=$!; "
                            "n=0; while [ \"$(cat " + test::quote(fs::path(out.string() + ".metrics.jsonl")) +
                            " 2>/dev/null | wc -l)\" -lt 4 ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done; "
                            "kill -INT $pid; wait $pid";
    const auto r = test::run_command("sh -c '" + [&] {
        std::string escaped;
        for (char c : cmd) escaped += c == '\'' ? std::string("'\\''") : std::string(1, c);
        return escaped;
    }() + "'");
    INFO(test::read_text(tmp / "log"));
    // Interrupted: what was reached is saved, and the exit code says the run did not finish (README).
    REQUIRE(r.exit_code == 130);
    const auto result = nlohmann::ordered_json::parse(test::read_text(tmp / "log"));
    CHECK(result.begin().key() == "schema_version");
    CHECK(result["tool"]["name"] == "bitfsck");
    CHECK(result["stopped_early"] == true);
    const std::int64_t reached = result["steps_done"];
    CHECK(reached >= 3);
    CHECK(test::read_json(fs::path(out.string() + ".state.json"))["step"] == reached);
    CHECK(test::checkpoint_values(out).size() == 24);

    const auto resumed = run_bitfsck("finetune --resume -o " + test::quote(out) + " --resume-steps " + std::to_string(reached + 2) + " --json");
    INFO(resumed.err);
    REQUIRE(resumed.exit_code == 0);
    const auto j = nlohmann::json::parse(resumed.out);
    CHECK(j["steps_done"] == reached + 2);
    CHECK(j["stopped_early"] == false);
    CHECK(metric_lines(fs::path(out.string() + ".metrics.jsonl")).back()["step"] == reached + 2);
}

TEST_CASE("cli finetune: two ranks over Gloo equal one rank with the same global batch", "[finetune][cli][distributed]") {
    test::TempDir tmp;
    std::random_device rd;
    const int port = 20000 + static_cast<int>(rd() % 20000);
    const std::string common = " finetune " + test::quote(kRun / "step_000050.pt") + data_flags() +
                               " --steps 4 --optimizer sgd --lr 0.05 --reg three-peaks:lambda=1e-3,roles=mlp";
    const std::string exe = test::quote(test::cli_path());
    const auto one = run_bitfsck(common.substr(1) + " --batch 8 -o " + test::quote(tmp / "one.pt"));
    INFO(one.err);
    REQUIRE(one.exit_code == 0);
    const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port);
    const auto two = test::run_command("sh -c \"" + env + " RANK=0 LOCAL_RANK=0 " + exe + common + " --batch 4 -o " + test::quote(tmp / "two.pt") +
                                       " & " + env + " RANK=1 LOCAL_RANK=1 " + exe + common + " --batch 4 -o " + test::quote(tmp / "two.pt") +
                                       " > /dev/null; r1=$?; wait $!; r0=$?; exit $((r0 + r1))\"");
    INFO(two.out << two.err);
    REQUIRE(two.exit_code == 0);
    const auto a = test::checkpoint_values(tmp / "one.pt"), b = test::checkpoint_values(tmp / "two.pt"),
               s = test::checkpoint_values(kRun / "step_000050.pt");
    REQUIRE(a.size() == b.size());
    double max_diff = 0, max_change = 0;
    for (const auto& [name, t] : a) {
        const auto& v = t.values;
        for (std::size_t i = 0; i < v.size(); ++i) {
            max_diff = std::max(max_diff, static_cast<double>(std::abs(v[i] - b.at(name).values[i])));
            max_change = std::max(max_change, static_cast<double>(std::abs(v[i] - s.at(name).values[i])));
        }
    }
    CHECK(max_change > 1e-3);  // the runs trained
    CHECK(max_diff < 1e-6);
    // Rank 0 alone wrote the metrics; its losses are the global batch's.
    const auto m1 = metric_lines(tmp / "one.pt.metrics.jsonl"), m2 = metric_lines(tmp / "two.pt.metrics.jsonl");
    REQUIRE(m1.size() == 5);
    REQUIRE(m2.size() == 5);
    for (std::size_t i = 1; i < m1.size(); ++i) CHECK(m2[i]["loss"].get<double>() == Approx(m1[i]["loss"].get<double>()).epsilon(1e-5));
}

TEST_CASE("cli timeline reads a finetune metrics file", "[finetune][cli]") {
    test::TempDir tmp;
    const fs::path out = tmp / "decay.pt";
    const auto r = run_bitfsck("finetune " + test::quote(kRun / "step_000050.pt") + " -o " + test::quote(out) + data_flags() +
                               " --batch 8 --steps 40 --lr 2e-3 --reg decay:lambda=30,roles=mlp");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const fs::path metrics = out.string() + ".metrics.jsonl";
    const auto t = run_bitfsck("timeline " + test::quote(metrics));
    INFO(t.out << t.err);
    CHECK(t.exit_code == 5);  // the last step is collapsed
    CHECK(t.out.find("collapse onset: step") != std::string::npos);
    CHECK(t.out.find("mlp_up std/zeros") != std::string::npos);
    const auto j = run_bitfsck("timeline --json " + test::quote(metrics));
    const auto doc = nlohmann::json::parse(j.out);
    CHECK(doc["final_verdict"] == "collapsed");
    CHECK(doc["points"].size() == 41);

    test::write_bytes(tmp / "bad.jsonl", "{\"step\": 1}\nnot json\n");
    const auto bad = run_bitfsck("timeline " + test::quote(tmp / "bad.jsonl"));
    CHECK(bad.exit_code != 0);
    CHECK(bad.err.find("bad.jsonl:2: not a JSON object") != std::string::npos);
}

TEST_CASE("cli finetune: the result is measured beside the run's own checkpoints on the same windows", "[finetune][cli]") {
    test::TempDir tmp;
    const fs::path out = tmp / "cured.pt";
    const auto r = run_bitfsck("finetune " + test::quote(kRun / "step_000050.pt") + " -o " + test::quote(out) + data_flags() +
                               " --batch 8 --steps 3 --json");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto doc = nlohmann::json::parse(r.out);
    REQUIRE(doc.contains("run_comparison"));
    const auto& cmp = doc["run_comparison"];
    // Every checkpoint of the folder, in step order, never the output itself.
    std::vector<std::string> expected;
    for (const auto& e : fs::directory_iterator(kRun))
        if (e.path().extension() == ".pt") expected.push_back(e.path().filename().string());
    std::sort(expected.begin(), expected.end());
    REQUIRE(cmp["checkpoints"].size() == expected.size());
    double lowest = 1e300;
    std::string lowest_file;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const auto& c = cmp["checkpoints"][i];
        CHECK(fs::path(c["file"].get<std::string>()).filename() == expected[i]);
        CHECK(std::isfinite(c["val_loss"].get<double>()));
        if (c["val_loss"].get<double>() < lowest) lowest = c["val_loss"].get<double>(), lowest_file = c["file"].get<std::string>();
    }
    CHECK(cmp["latest"]["file"] == cmp["checkpoints"].back()["file"]);
    CHECK(cmp["best"]["file"] == lowest_file);
    CHECK(cmp["beats_best"].get<bool>() == (cmp["result"].get<double>() < lowest));
    // The same windows through the same forward: the input's own entry is the loss training started from,
    // and the result's is the loss it ended at.
    CHECK(cmp["checkpoints"][0]["val_loss"].get<double>() == Approx(doc["val_loss_before"].get<double>()).epsilon(1e-4));
    CHECK(cmp["result"].get<double>() == Approx(doc["val_loss_after"].get<double>()).epsilon(1e-4));

    const auto off = run_bitfsck("finetune " + test::quote(kRun / "step_000050.pt") + " -o " + test::quote(tmp / "b.pt") + data_flags() +
                                 " --batch 8 --steps 1 --json --no-compare-run");
    REQUIRE(off.exit_code == 0);
    CHECK_FALSE(nlohmann::json::parse(off.out).contains("run_comparison"));
}

TEST_CASE("cli model commands: --device cuda without a usable GPU fails at once with one line, exit 1", "[finetune][cli][device]") {
    if (fs::exists("/dev/nvidia0") || fs::exists("/dev/dxg")) {
        WARN("a GPU is present: the refusal is not what this machine should do; skipped");
        return;
    }
    test::TempDir tmp;
    const std::string ck = test::quote(kRun / "step_000350.pt");
    for (const std::string cmd : {"perplexity " + ck + " --tokens " + test::quote(kRun / "val.bin") + " --seq-len 32 --max-windows 2",
                                  "finetune " + ck + " -o " + test::quote(tmp / "o.pt") + data_flags() + " --steps 2",
                                  "generate " + ck + " --max-new-tokens 2"}) {
        for (const std::string device : {"cuda", "cuda:3"}) {
            const auto r = run_bitfsck(cmd + " --device " + device);
            INFO(cmd << " --device " << device << "\n" << r.err);
            CHECK(r.exit_code == 1);
            CHECK(r.err.find("--device " + device + ": this LibTorch") != std::string::npos);
            CHECK(r.err.find("use --device cpu") != std::string::npos);
            CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        }
    }
    CHECK_FALSE(fs::exists(tmp / "o.pt"));
    const auto bad = run_bitfsck("perplexity " + ck + " --tokens " + test::quote(kRun / "val.bin") + " --device gpu");
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("expected cpu, cuda or cuda:N") != std::string::npos);
}
