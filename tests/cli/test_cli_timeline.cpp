#include <catch2/catch.hpp>

#include <filesystem>

#include "json_schema_check.hpp"
#include "safetensors_fixture.hpp"
#include "support.hpp"

using namespace bitfsck;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string bitfsck_cmd(const std::string& args) { return test::quote(test::cli_path()) + " " + args; }

// A run folder: MLP weights healthy at steps 100 and 200, collapsed (std 1e-5) from 300 on, and a
// token file that is not a checkpoint, as training folders have.
void make_run(const fs::path& dir) {
    fs::create_directories(dir);
    test::write_safetensors(dir / "step_000100.safetensors", test::llama_like(0.02, 1));
    test::write_safetensors(dir / "step_000200.safetensors", test::llama_like(0.021, 100));
    test::write_safetensors(dir / "step_000300.safetensors", test::llama_like(1e-5, 200));
    test::write_safetensors(dir / "step_000400.safetensors", test::llama_like(1e-6, 300));
    test::write_bytes(dir / "train.bin", std::string(4096, '\x07'));
}

std::vector<std::string> schema_errors(const std::string& schema, const json& doc) {
    return test::SchemaChecker(test::read_json(test::source_dir() / "docs" / schema)).check(doc);
}

}  // namespace

TEST_CASE("timeline --json names the onset and the last healthy checkpoint", "[cli][timeline]") {
    test::TempDir tmp;
    make_run(tmp / "run");
    auto r = test::run_command(bitfsck_cmd("timeline --json " + test::quote(tmp / "run")));
    INFO(r.err);
    CHECK(r.exit_code == 5);  // the last step is collapsed
    json doc;
    REQUIRE_NOTHROW(doc = json::parse(r.out));
    auto errors = schema_errors("timeline.schema.json", doc);
    for (const auto& e : errors) UNSCOPED_INFO(e);
    CHECK(errors.empty());
    CHECK(doc["schema_version"] == 1);
    CHECK(doc["onset_step"] == 300);
    CHECK(doc["collapsed_step"] == 300);
    CHECK(doc["last_healthy_step"] == 200);
    CHECK(fs::path(doc["last_healthy_file"].get<std::string>()).filename() == "step_000200.safetensors");
    CHECK(doc["final_verdict"] == "collapsed");
    REQUIRE(doc["points"].size() == 4);  // train.bin was not taken
    CHECK(doc["points"][0]["step_from_file_name"] == true);
    CHECK_FALSE(doc["reasons"].empty());
    for (const auto& o : doc["role_onsets"]) CHECK(o["role"].get<std::string>().rfind("mlp_", 0) == 0);
    CHECK(r.err.find("train.bin") == std::string::npos);
}

TEST_CASE("timeline prints a per-step table and the onset", "[cli][timeline]") {
    test::TempDir tmp;
    make_run(tmp / "run");
    auto r = test::run_command(bitfsck_cmd("timeline " + test::quote(tmp / "run")));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 5);
    CHECK(r.out.find("mlp_up std/zeros") != std::string::npos);
    CHECK(r.out.find("collapse onset: step 300") != std::string::npos);
    CHECK(r.out.find("last healthy checkpoint: " + (tmp / "run" / "step_000200.safetensors").string() + " (step 200)") != std::string::npos);
    CHECK(r.out.find("\x1b[") == std::string::npos);  // no colours when stdout is not a terminal
}

TEST_CASE("a healthy run exits 0 and says there is no onset", "[cli][timeline]") {
    test::TempDir tmp;
    test::write_safetensors(tmp / "ckpt-10.safetensors", test::llama_like(0.02, 1));
    test::write_safetensors(tmp / "ckpt-20.safetensors", test::llama_like(0.02, 50));
    auto r = test::run_command(bitfsck_cmd("timeline " + test::quote(tmp / "ckpt-10.safetensors") + " " + test::quote(tmp / "ckpt-20.safetensors")));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("collapse onset: none") != std::string::npos);
    CHECK(r.out.find("(step 20)") != std::string::npos);
}

TEST_CASE("an unreadable checkpoint is reported and the others still make a timeline", "[cli][timeline]") {
    test::TempDir tmp;
    make_run(tmp / "run");
    test::write_bytes(tmp / "run" / "step_000250.pt", "this is not a checkpoint");
    auto r = test::run_command(bitfsck_cmd("timeline --json " + test::quote(tmp / "run")));
    CHECK(r.exit_code == 2);  // unreadable outranks collapsed
    CHECK(r.err.find("bitfsck: error: " + (tmp / "run" / "step_000250.pt").string()) != std::string::npos);
    json doc = json::parse(r.out);
    CHECK(doc["points"].size() == 4);
    CHECK(doc["onset_step"] == 300);
}

TEST_CASE("a checkpoint without a step is left out with an error", "[cli][timeline]") {
    test::TempDir tmp;
    test::write_safetensors(tmp / "step_5.safetensors", test::llama_like(0.02, 1));
    test::write_safetensors(tmp / "final.safetensors", test::llama_like(0.02, 2));
    auto r = test::run_command(bitfsck_cmd("timeline --json " + test::quote(tmp.path())));
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("final.safetensors") != std::string::npos);
    CHECK(json::parse(r.out)["points"].size() == 1);
}

TEST_CASE("timeline --h5 writes the report only at its final name", "[cli][timeline][h5]") {
    test::TempDir tmp;
    make_run(tmp / "run");
    auto out = tmp / "run.h5";
    auto r = test::run_command(bitfsck_cmd("timeline " + test::quote(tmp / "run") + " --h5 " + test::quote(out)));
    INFO(r.err);
    CHECK(r.exit_code == 5);
    CHECK(fs::exists(out));
    CHECK(fs::file_size(out) > 1000);
    for (const auto& e : fs::directory_iterator(tmp.path())) CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
    // HDF5 signature.
    CHECK(test::read_text(out).substr(0, 8) == "\x89HDF\r\n\x1a\n");
}

TEST_CASE("timeline thresholds and quantizer flags are checked", "[cli][timeline]") {
    test::TempDir tmp;
    make_run(tmp / "run");
    const std::string run = test::quote(tmp / "run");
    CHECK(test::run_command(bitfsck_cmd("timeline --quantizer ternary9 " + run)).exit_code == 1);
    auto unknown = test::run_command(bitfsck_cmd("timeline --threshold no_such_key=1 " + run));
    CHECK(unknown.exit_code == 1);
    CHECK(unknown.err.find("no_such_key") != std::string::npos);
    CHECK(test::run_command(bitfsck_cmd("timeline --threshold collapsed_std " + run)).exit_code == 1);
    test::write_bytes(tmp / "t.json", "{\"collapsed_std\": ");
    CHECK(test::run_command(bitfsck_cmd("timeline --thresholds " + test::quote(tmp / "t.json") + " " + run)).exit_code == 1);
    CHECK(test::run_command(bitfsck_cmd("timeline " + test::quote(tmp / "missing"))).exit_code == 2);  // a missing input

    // Under distillix (scale-invariant codes: no zeros piling up, no dead rows) with thresholds
    // that call std 1e-6 fine and switch off the relative rules, nothing collapses any more.
    test::write_bytes(tmp / "lenient.json", "{\"collapsed_std\": 1e-9, \"collapsed_zero_frac\": 1.0, \"degraded_zero_frac\": 1.0}");
    auto lenient = test::run_command(bitfsck_cmd("timeline --json --quantizer distillix --thresholds " + test::quote(tmp / "lenient.json") +
                                                 " --threshold collapsed_role_ratio=1e-9 --threshold degraded_role_ratio=1e-9 " + run));
    INFO(lenient.err);
    json doc = json::parse(lenient.out);
    CHECK(doc["quantizer"] == "distillix");
    CHECK(doc["thresholds"]["collapsed_std"] == Approx(1e-9));
    CHECK(doc["thresholds"]["collapsed_role_ratio"] == Approx(1e-9));
    CHECK(doc["collapsed_step"].is_null());
}

TEST_CASE("timeline and diff help carry an example", "[cli]") {
    for (const char* sub : {"timeline", "diff"}) {
        auto r = test::run_command(bitfsck_cmd(std::string(sub) + " --help"));
        CHECK(r.exit_code == 0);
        CHECK(r.out.find("Example:\n  bitfsck " + std::string(sub)) != std::string::npos);
    }
}

TEST_CASE("diff --json reports flips between two checkpoints", "[cli][diff]") {
    test::TempDir tmp;
    auto a = test::llama_like(0.02, 1);
    auto b = a;
    for (auto& x : b[4].values) x = -x;  // layer 0 mlp.gate_proj: every non-zero code flips sign
    test::write_safetensors(tmp / "a.safetensors", a);
    test::write_safetensors(tmp / "b.safetensors", b);
    auto r = test::run_command(bitfsck_cmd("diff --json " + test::quote(tmp / "a.safetensors") + " " + test::quote(tmp / "b.safetensors")));
    INFO(r.err);
    CHECK(r.exit_code == 0);
    json doc = json::parse(r.out);
    auto errors = schema_errors("diff.schema.json", doc);
    for (const auto& e : errors) UNSCOPED_INFO(e);
    CHECK(errors.empty());
    REQUIRE(doc["tensors"].size() == a.size());
    for (const auto& t : doc["tensors"]) {
        if (t["name"] == "model.layers.0.mlp.gate_proj.weight") {
            CHECK(t["rel_l2"].get<double>() == Approx(2.0));
            CHECK(t["transitions"][0][0] == 0);
            CHECK(t["transitions"][1][1] == t["count"].get<std::uint64_t>() - t["flips"].get<std::uint64_t>());
            CHECK(t["flip_rate"].get<double>() > 0.5);
        } else {
            CHECK(t["flips"] == 0);
            CHECK(t["rel_l2"] == 0.0);
        }
    }

    auto text = test::run_command(bitfsck_cmd("diff " + test::quote(tmp / "a.safetensors") + " " + test::quote(tmp / "b.safetensors")));
    CHECK(text.exit_code == 0);
    CHECK(text.out.find("rel L2") != std::string::npos);
    CHECK(text.out.find("+1\u2192-1") != std::string::npos);

    test::write_bytes(tmp / "broken.pt", "PK\x03\x04 truncated");
    auto broken = test::run_command(bitfsck_cmd("diff " + test::quote(tmp / "a.safetensors") + " " + test::quote(tmp / "broken.pt")));
    CHECK(broken.exit_code == 2);
    CHECK(broken.err.find((tmp / "broken.pt").string()) != std::string::npos);
}
