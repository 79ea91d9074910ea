#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "bitfsck/analysis/diff.hpp"
#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/checkpoint.hpp"
#include "json_schema_check.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::analysis;
using nlohmann::json;

namespace {

TensorStats tensor(const std::string& name, double std) {
    TensorStats t;
    t.name = name;
    t.dtype = "float32";
    t.shape = {4, 8};
    t.count = 32;
    t.finite_count = 32;
    t.std = std;
    t.mean = 0.001;
    t.absmean = std * 0.8;
    t.ternary = {Quantizer::BitNet, t.absmean, 0.3, 0.4, 0.3};
    t.ternary_other = {Quantizer::Distillix, t.absmean, 0.3, 0.4, 0.3};
    t.values = {-0.1, 0.1, {1, 2, 3, 4}};
    t.log_magnitude = {-12, 4, {0, 5, 27}};
    t.dead = {4, 8, 1, 0, false};
    return t;
}

ScanReport sample_report() {
    ScanReport r;
    r.file = "/runs/a/step_000400.pt";
    r.file_size = 12345;
    r.content_hash = "xxh3-128:00112233445566778899aabbccddeeff";
    r.format = "torch_zip";
    r.state_dict_path = "model_state_dict";
    r.step = 400;
    r.tensors.push_back(tensor("layers.0.mlp.up_proj.weight", 0.02));
    TensorStats broken = tensor("layers.1.mlp.up_proj.weight", std::numeric_limits<double>::quiet_NaN());
    broken.nan_count = 2;
    broken.inf_count = 1;
    broken.finite_count = 29;
    broken.max = std::numeric_limits<double>::infinity();
    r.tensors.push_back(broken);
    LayerRoleStats l;
    l.layer = 1;
    l.role = Role::MlpUp;
    l.tensors = {"layers.1.mlp.up_proj.weight"};
    l.count = 32;
    l.std = 4.5e-5;
    l.verdict = Verdict::Collapsed;
    r.layers.push_back(l);
    r.findings.push_back({Verdict::Collapsed, "non_finite", "layers.1.mlp.up_proj.weight", "layers.1.mlp.up_proj.weight: 3 non-finite values"});
    r.security.push_back({"posix.system", "critical", 77, true, "runs a shell command"});
    r.verdict = Verdict::Collapsed;
    return r;
}

test::SchemaChecker schema(const std::string& name) { return test::SchemaChecker(test::read_json(test::source_dir() / "docs" / name)); }

std::string joined(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += x + "\n";
    return s;
}

}  // namespace

TEST_CASE("scan report JSON has the documented top level", "[report_json]") {
    auto j = to_json(sample_report());
    std::vector<std::string> keys;
    for (const auto& [k, v] : j.items()) keys.push_back(k);
    CHECK(keys == std::vector<std::string>{"schema_version", "tool", "file", "file_size", "content_hash", "format", "state_dict_path",
                                           "step", "quantizer", "thresholds", "verdict", "name_layout", "unassigned", "undecoded",
                                           "notes", "warnings", "non_finite", "findings", "security", "layers", "tensors"});
    CHECK(j["schema_version"] == 1);
    CHECK(j["tool"]["name"] == "bitfsck");
    CHECK(j["tool"]["version"] == std::string(bitfsck::tool_version()));
    CHECK(to_json(sample_report(), true, "9.9.9")["tool"]["version"] == "9.9.9");
    CHECK(j["step"] == 400);
    CHECK(j["state_dict_path"] == "model_state_dict");
    CHECK(j["verdict"] == "collapsed");
    CHECK(j["quantizer"] == "bitnet");
    CHECK(j["thresholds"]["collapsed_std"] == Approx(1e-3));
    CHECK(j["thresholds"]["min_elements"] == 256);
    CHECK(j["security"][0]["global"] == "posix.system");
    CHECK(j["security"][0]["offset"] == 77);
    CHECK(j["findings"][0]["rule"] == "non_finite");
    CHECK(j["layers"][0]["layer"] == 1);
    CHECK(j["layers"][0]["role"] == "mlp_up");
    CHECK(j["layers"][0]["verdict"] == "collapsed");
}

TEST_CASE("absent step and state dict become null", "[report_json]") {
    ScanReport r = sample_report();
    r.step.reset();
    r.state_dict_path.reset();
    r.layers[0].layer.reset();
    auto j = to_json(r);
    CHECK(j["step"].is_null());
    CHECK(j["state_dict_path"].is_null());
    CHECK(j["layers"][0]["layer"].is_null());
}

TEST_CASE("non-finite numbers become null with explicit counts", "[report_json]") {
    auto j = to_json(sample_report());
    const auto& good = j["tensors"][0];
    const auto& bad = j["tensors"][1];
    CHECK(good["std"] == Approx(0.02));
    CHECK(bad["std"].is_null());
    CHECK(bad["max"].is_null());
    CHECK(bad["nan_count"] == 2);
    CHECK(bad["inf_count"] == 1);
    CHECK(bad["finite_count"] == 29);
    CHECK(j["non_finite"]["nan_count"] == 2);
    CHECK(j["non_finite"]["inf_count"] == 1);
    // A dump must stay parseable: no bare NaN or Infinity tokens.
    auto text = dump_json(j);
    CHECK(text.find("NaN") == std::string::npos);
    CHECK(text.find("Infinity") == std::string::npos);
    CHECK(json::parse(text)["tensors"][1]["std"].is_null());
}

TEST_CASE("tensor entries carry every statistic and their verdict", "[report_json]") {
    auto j = to_json(sample_report());
    const auto& t = j["tensors"][0];
    for (const char* k : {"name", "dtype", "shape", "count", "finite_count", "nan_count", "inf_count", "mean", "std", "min", "max",
                          "absmean", "zero_frac", "ternary", "ternary_other", "values", "log_magnitude", "lattice", "dead", "verdict"})
        CHECK(t.contains(k));
    CHECK(t["shape"] == json::array({4, 8}));
    CHECK(t["ternary"]["quantizer"] == "bitnet");
    CHECK(t["ternary_other"]["quantizer"] == "distillix");
    CHECK(t["ternary"]["zero"] == Approx(0.4));
    CHECK(t["values"]["lo"] == Approx(-0.1));
    CHECK(t["values"]["counts"] == json::array({1, 2, 3, 4}));
    CHECK(t["dead"]["dead_rows"] == 1);
    CHECK(t["lattice"].contains("is_ternary"));
    CHECK(t["verdict"] == "healthy");
    CHECK(j["tensors"][1]["verdict"] == "collapsed");  // from the finding about it
}

TEST_CASE("histograms can be left out", "[report_json]") {
    auto j = to_json(sample_report(), false);
    CHECK_FALSE(j["tensors"][0].contains("values"));
    CHECK_FALSE(j["tensors"][0].contains("log_magnitude"));
    CHECK(j["tensors"][0].contains("std"));
    CHECK(schema("scan.schema.json").check(json::parse(dump_json(j))).empty());
}

TEST_CASE("dump_json replaces invalid UTF-8 instead of throwing", "[report_json]") {
    ScanReport r = sample_report();
    r.tensors[0].name = std::string("bad\xff\xfename");
    std::string text;
    REQUIRE_NOTHROW(text = dump_json(to_json(r)));
    CHECK(text.find("\xEF\xBF\xBD") != std::string::npos);  // U+FFFD
    CHECK(text.find("\n  \"schema_version\": 1") != std::string::npos);  // indent 2
}

TEST_CASE("hand-built scan report conforms to docs/scan.schema.json", "[report_json][schema]") {
    auto checker = schema("scan.schema.json");
    auto doc = json::parse(dump_json(to_json(sample_report())));
    auto errors = checker.check(doc);
    INFO(joined(errors));
    CHECK(errors.empty());

    // The checker itself must catch what the schema forbids.
    auto missing = doc;
    missing.erase("verdict");
    CHECK_FALSE(checker.check(missing).empty());
    auto wrong = doc;
    wrong["tensors"][0]["verdict"] = "fine";
    CHECK_FALSE(checker.check(wrong).empty());
    auto bad_type = doc;
    bad_type["file_size"] = "big";
    CHECK_FALSE(checker.check(bad_type).empty());
}

TEST_CASE("a real scan conforms to docs/scan.schema.json", "[report_json][schema][sample]") {
    auto file = test::samples_dir() / "plain_state_dict.pt";
    if (!std::filesystem::exists(file)) {
        WARN("no " << file << "; skipped");
        return;
    }
    auto c = io::Checkpoint::open(file);
    ScanReport r = scan_checkpoint(c);
    auto doc = json::parse(dump_json(to_json(r)));
    auto errors = schema("scan.schema.json").check(doc);
    INFO(joined(errors));
    CHECK(errors.empty());
    CHECK(doc["tensors"].size() == r.tensors.size());
    CHECK(doc["file_size"] == std::filesystem::file_size(file));
    CHECK(doc["format"] == "torch_zip");
    CHECK(doc["content_hash"].get<std::string>().rfind("xxh3-128:", 0) == 0);
}

TEST_CASE("timeline JSON conforms to docs/timeline.schema.json", "[report_json][schema]") {
    std::vector<ScanReport> reports;
    for (int i = 0; i < 3; ++i) {
        ScanReport r = sample_report();
        r.step = 100 * i;
        r.file = "step_" + std::to_string(100 * i) + ".pt";
        if (i == 0) {
            r.findings.clear();
            r.verdict = Verdict::Healthy;
            r.layers[0].verdict = Verdict::Healthy;
        }
        reports.push_back(r);
    }
    auto doc = json::parse(dump_json(to_json(build_timeline(reports))));
    auto errors = schema("timeline.schema.json").check(doc);
    INFO(joined(errors));
    CHECK(errors.empty());
    CHECK(doc["onset_step"] == 100);
    CHECK(doc["last_healthy_step"] == 0);
    CHECK(doc["points"].size() == 3);
}

TEST_CASE("diff JSON conforms to docs/diff.schema.json", "[report_json][schema]") {
    CheckpointDiff d;
    d.file_a = "a.pt";
    d.file_b = "b.pt";
    TensorDiff t;
    t.name = "w";
    t.shape = {2, 2};
    t.compared = true;
    t.count = 4;
    t.transitions[0][1] = 1;
    t.transitions[2][2] = 3;
    t.flips = 1;
    t.flip_rate = 0.25;
    t.rel_l2 = std::numeric_limits<double>::infinity();
    d.tensors.push_back(t);
    TensorDiff only;
    only.name = "extra";
    only.only_in_b = true;
    d.tensors.push_back(only);
    auto doc = json::parse(dump_json(to_json(d)));
    auto errors = schema("diff.schema.json").check(doc);
    INFO(joined(errors));
    CHECK(errors.empty());
    CHECK(doc["tensors"][0]["rel_l2"].is_null());
    CHECK(doc["tensors"][0]["transitions"][0][1] == 1);
    CHECK(doc["tensors"][1]["only_in_b"] == true);
    CHECK(doc["transition_codes"] == json::array({-1, 0, 1}));
}
