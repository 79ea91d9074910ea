// The command line on sharded Hugging Face checkpoints written by huggingface_hub (what
// transformers' save_pretrained calls): one model in, one report out; sharded in, sharded out,
// read back by safetensors and torch.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>

#include "releases.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string bitfsck_cmd(const std::string& args) { return test::quote(test::cli_path()) + " " + args; }

json scan_json(const fs::path& p, int expected_exit) {
    auto r = test::run_command(bitfsck_cmd("scan --json " + test::quote(p)));
    INFO(r.err);
    CHECK(r.exit_code == expected_exit);
    const json all = json::parse(r.out);
    REQUIRE(all.size() == 1);
    return all[0];
}

}  // namespace

TEST_CASE("scan and inspect take a sharded folder as one model", "[shards]") {
    const fs::path folder = test::releases("sharded") / "bitnet_autobitlinear";
    const json doc = scan_json(folder, 5);
    CHECK(doc["verdict"] == "collapsed");
    CHECK(doc["shards"].size() == 15);
    CHECK(doc["layers"].size() == 14);
    for (const auto& t : doc["tensors"]) CHECK(t.contains("shard"));
    auto r = test::run_command(bitfsck_cmd("inspect " + test::quote(folder)));
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("15 shards") != std::string::npos);
    CHECK(r.out.find("model-00002-of-00015.safetensors @") != std::string::npos);
}

TEST_CASE("a sharded checkpoint gives the same figures as the same weights in one file", "[shards]") {
    const fs::path dir = test::releases("sharded");
    for (const char* name : {"bitnet_autobitlinear", "bitnet_bitlinear"}) {
        INFO(name);
        const json sharded = scan_json(dir / name, 5);
        const json single = scan_json(dir / (std::string(name) + "_single"), 5);
        REQUIRE(sharded["tensors"].size() == single["tensors"].size());
        std::map<std::string, json> by_name;  // the files list tensors in different orders
        for (const auto& t : single["tensors"]) by_name[t["name"].get<std::string>()] = t;
        for (json a : sharded["tensors"]) {
            a.erase("shard");
            INFO(a["name"]);
            CHECK(a == by_name.at(a["name"].get<std::string>()));
        }
        CHECK(sharded["layers"] == single["layers"]);
        auto sorted_dumps = [](const json& a) {
            std::vector<std::string> v;
            for (const auto& x : a) v.push_back(x.dump());
            std::sort(v.begin(), v.end());
            return v;
        };
        CHECK(sorted_dumps(sharded["findings"]) == sorted_dumps(single["findings"]));
    }
}

TEST_CASE("timeline of a run of checkpoint-N/ folders finds the sample run's onset", "[shards]") {
    auto r = test::run_command(bitfsck_cmd("timeline --json " + test::quote(test::releases("sharded") / "hf_run")));
    INFO(r.err);
    CHECK(r.exit_code == 5);
    const json t = json::parse(r.out);
    CHECK(t["points"].size() == 7);
    CHECK(t["onset_step"] == 100);
    CHECK(t["last_healthy_step"] == 50);
    CHECK(t["collapsed_step"] == 200);
}

TEST_CASE("diff of pickle shards against the single file they came from: nothing changed", "[shards]") {
    auto r = test::run_command(bitfsck_cmd("diff --json " + test::quote(test::releases("sharded") / "run350_bin") + " " +
                                           test::quote(test::samples_dir() / "run/step_000350.pt")));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const json d = json::parse(r.out);
    REQUIRE(d["tensors"].size() == 24);
    for (const auto& t : d["tensors"]) CHECK(t["rel_l2"] == 0.0);
}

TEST_CASE("repair of a sharded checkpoint writes a sharded folder, the rest byte for byte", "[shards]") {
    test::TempDir tmp;
    const fs::path in = test::releases("sharded") / "run350_safetensors";
    const fs::path out = tmp / "aligned";
    auto r = test::run_command(bitfsck_cmd("repair align " + test::quote(in) + " -o " + test::quote(out) + " --like " +
                                           test::quote(test::samples_dir() / "run/step_000050.pt")));
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("collapsed -> healthy") != std::string::npos);
    CHECK(fs::exists(tmp / "aligned.repair.json"));
    CHECK(test::read_text(out / "model.safetensors.index.json") == test::read_text(in / "model.safetensors.index.json"));
    std::size_t identical = 0;
    for (int i = 1; i <= 5; ++i) {
        char name[64];
        std::snprintf(name, sizeof name, "model-%05d-of-00005.safetensors", i);
        REQUIRE(fs::exists(out / name));
        identical += test::read_text(out / name) == test::read_text(in / name);
    }
    CHECK(identical >= 1);  // shards holding no MLP are copied as they are
    CHECK(scan_json(out, 0)["verdict"] == "healthy");
    r = test::run_command(bitfsck_cmd("repair replay " + test::quote(tmp / "aligned.repair.json") + " -o " + test::quote(tmp / "again")));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("identical") != std::string::npos);
    // A file name promises one file: refused before anything is written.
    r = test::run_command(bitfsck_cmd("repair svd " + test::quote(in) + " -o " + test::quote(tmp / "x.safetensors") + " --rank 2"));
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("written as a folder of shards") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp / "x.safetensors"));
}

TEST_CASE("convert of pickle shards to safetensors shards, read back by safetensors and torch", "[shards]") {
    test::TempDir tmp;
    const fs::path in = test::releases("sharded") / "run350_bin";
    const fs::path out = tmp / "st";
    auto r = test::run_command(bitfsck_cmd("convert " + test::quote(in) + " " + test::quote(out) + " --to safetensors"));
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(fs::exists(out / "model.safetensors.index.json"));
    CHECK(fs::exists(out / "model-00005-of-00005.safetensors"));
    const std::string check =
        "import json, sys, os, torch\n"
        "from safetensors.torch import load_file\n"
        "out, ref = sys.argv[1], sys.argv[2]\n"
        "index = json.load(open(os.path.join(out, 'model.safetensors.index.json')))\n"
        "want = torch.load(ref, map_location='cpu')['model_state_dict']\n"
        "got = {}\n"
        "for f in sorted(set(index['weight_map'].values())): got.update(load_file(os.path.join(out, f)))\n"
        "assert set(got) == set(want), (set(got) ^ set(want))\n"
        "assert all(torch.equal(got[k], want[k]) for k in want)\n"
        "assert all(index['weight_map'][k] for k in want)\n"
        "print('ok', len(got))\n";
    test::write_bytes(tmp / "check.py", check);
    r = test::run_command(test::python() + " " + test::quote(tmp / "check.py") + " " + test::quote(out) + " " +
                          test::quote(test::samples_dir() / "run/step_000350.pt"));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ok 24\n");
}
