#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

#include "bitfsck/analysis/scan.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::analysis;

namespace {

TensorStats healthy(const std::string& name, double std = 0.02) {
    TensorStats t;
    t.name = name;
    t.dtype = "float32";
    t.shape = {64, 64};
    t.count = t.finite_count = 4096;
    t.std = std;
    t.absmean = std * 0.8;
    t.ternary.neg = 0.345;
    t.ternary.zero = 0.31;
    t.ternary.pos = 0.345;
    t.dead.rows = 64;
    t.dead.cols = 64;
    return t;
}

// Four layers of MLP and attention tensors plus an embedding, all healthy.
ScanReport model() {
    ScanReport r;
    r.tensors.push_back(healthy("model.embed_tokens.weight", 1.0));
    for (int l = 0; l < 4; ++l) {
        std::string p = "model.layers." + std::to_string(l) + ".";
        r.tensors.push_back(healthy(p + "self_attn.q_proj.weight"));
        r.tensors.push_back(healthy(p + "mlp.up_proj.weight"));
        r.tensors.push_back(healthy(p + "mlp.down_proj.weight"));
        TensorStats bias = healthy(p + "mlp.down_proj.bias", 1e-6);
        bias.count = 64;
        r.tensors.push_back(bias);
    }
    return r;
}

TensorStats& tensor(ScanReport& r, const std::string& name) {
    auto it = std::find_if(r.tensors.begin(), r.tensors.end(), [&](const TensorStats& t) { return t.name == name; });
    REQUIRE(it != r.tensors.end());
    return *it;
}

const Finding* finding(const ScanReport& r, const std::string& rule, const std::string& subject) {
    for (const auto& f : r.findings)
        if (f.rule == rule && f.subject == subject) return &f;
    return nullptr;
}

const LayerRoleStats& group(const ScanReport& r, int layer, Role role) {
    auto it = std::find_if(r.layers.begin(), r.layers.end(),
                           [&](const LayerRoleStats& g) { return g.layer == layer && g.role == role; });
    REQUIRE(it != r.layers.end());
    return *it;
}

const std::string up2 = "model.layers.2.mlp.up_proj.weight";

}  // namespace

TEST_CASE("verdict names and ordering", "[verdict]") {
    CHECK(verdict_name(Verdict::Healthy) == "healthy");
    CHECK(verdict_name(Verdict::Degraded) == "degraded");
    CHECK(verdict_name(Verdict::Collapsed) == "collapsed");
    CHECK(worst(Verdict::Healthy, Verdict::Degraded) == Verdict::Degraded);
    CHECK(worst(Verdict::Collapsed, Verdict::Degraded) == Verdict::Collapsed);
    CHECK(worst(Verdict::Healthy, Verdict::Healthy) == Verdict::Healthy);
}

TEST_CASE("a healthy model has no findings and is grouped by layer and role", "[verdict]") {
    ScanReport r = model();
    judge(r);
    CHECK(r.verdict == Verdict::Healthy);
    CHECK(r.findings.empty());
    // 4 layers x 3 roles; the embedding is not a ternary matrix and the bias is not a weight.
    REQUIRE(r.layers.size() == 12);
    CHECK(r.layers[0].layer == 0);
    CHECK(r.layers[0].role == Role::AttnQ);
    CHECK(r.layers[1].role == Role::MlpUp);
    CHECK(r.layers[2].role == Role::MlpDown);
    CHECK(r.layers[11].layer == 3);
    const auto& g = group(r, 1, Role::MlpUp);
    CHECK(g.tensors == std::vector<std::string>{"model.layers.1.mlp.up_proj.weight"});
    CHECK(g.count == 4096);
    CHECK(g.std == Approx(0.02));
    CHECK(g.zero == Approx(0.31));
    CHECK(g.rows == 64);
    CHECK(g.verdict == Verdict::Healthy);
}

TEST_CASE("layer-role aggregates are element-weighted", "[verdict]") {
    ScanReport r;
    TensorStats a = healthy("layers.0.mlp.up_proj.weight", 0.01);
    TensorStats b = healthy("layers.0.mlp.up_proj.lora_weight", 0.04);
    b.count = 3 * 4096;
    b.dead.rows = 192;
    b.dead.dead_rows = 3;
    r.tensors = {a, b};
    judge(r);
    REQUIRE(r.layers.size() == 1);
    CHECK(r.layers[0].count == 4 * 4096);
    CHECK(r.layers[0].std == Approx((0.01 + 3 * 0.04) / 4));
    CHECK(r.layers[0].rows == 256);
    CHECK(r.layers[0].dead_rows == 3);
}

TEST_CASE("an all-zero tensor is collapsed", "[verdict]") {
    ScanReport r = model();
    TensorStats& t = tensor(r, up2);
    t.dead.all_zero = true;
    t.std = t.absmean = 0;
    t.zero_frac = t.ternary.zero = 1;
    t.ternary.neg = t.ternary.pos = 0;
    t.dead.dead_rows = 64;
    judge(r);
    CHECK(r.verdict == Verdict::Collapsed);
    const Finding* f = finding(r, "all_zero", up2);
    REQUIRE(f);
    CHECK(f->severity == Verdict::Collapsed);
    CHECK(f->message == up2 + ": all 4096 values are exactly 0");
    CHECK(group(r, 2, Role::MlpUp).verdict == Verdict::Collapsed);
    CHECK(group(r, 1, Role::MlpUp).verdict == Verdict::Healthy);
}

TEST_CASE("small std and mostly-zero codes make one finding", "[verdict]") {
    ScanReport r = model();
    TensorStats& t = tensor(r, up2);
    t.std = 4.5e-5;
    t.absmean = 3.6e-5;
    t.ternary.zero = 0.991;
    judge(r);
    const Finding* f = finding(r, "std_below", up2);
    REQUIRE(f);
    CHECK(f->severity == Verdict::Collapsed);
    CHECK(f->message == up2 + ": std 4.5e-05 < 1e-03 and 99.1% ternary zeros > 80%");
    CHECK_FALSE(finding(r, "zeros_above", up2));
    // The same tensor is also far below the other layers' up projections.
    const Finding* o = finding(r, "role_outlier", up2);
    REQUIRE(o);
    CHECK(o->severity == Verdict::Collapsed);
    CHECK(o->message == up2 + ": std 4.5e-05 < 0.01 x median 0.02 of mlp_up in 3 other layers");
    CHECK(r.verdict == Verdict::Collapsed);
}

TEST_CASE("absmean below the floor alone", "[verdict]") {
    ScanReport r = model();
    TensorStats& t = tensor(r, up2);
    t.absmean = 5e-4;
    judge(r);
    const Finding* f = finding(r, "std_below", up2);
    REQUIRE(f);
    CHECK(f->message == up2 + ": absmean 5e-04 < 1e-03");
}

TEST_CASE("ternary zero fractions: degraded, then collapsed", "[verdict]") {
    ScanReport r = model();
    tensor(r, up2).ternary.zero = 0.6;
    judge(r);
    const Finding* f = finding(r, "zeros_above", up2);
    REQUIRE(f);
    CHECK(f->severity == Verdict::Degraded);
    CHECK(f->message == up2 + ": 60.0% ternary zeros > 55%");
    CHECK(r.verdict == Verdict::Degraded);
    CHECK(group(r, 2, Role::MlpUp).verdict == Verdict::Degraded);

    tensor(r, up2).ternary.zero = 0.85;
    judge(r);
    f = finding(r, "zeros_above", up2);
    REQUIRE(f);
    CHECK(f->severity == Verdict::Collapsed);
    CHECK(f->message == up2 + ": 85.0% ternary zeros > 80%");
    CHECK(r.findings.size() == 1);  // judging again starts afresh
}

TEST_CASE("a layer far below the same role elsewhere", "[verdict]") {
    ScanReport r = model();
    tensor(r, up2).std = 0.003;  // above the absolute floor, 0.15 x the median
    judge(r);
    const Finding* f = finding(r, "role_outlier", up2);
    REQUIRE(f);
    CHECK(f->severity == Verdict::Degraded);
    CHECK(f->message == up2 + ": std 3e-03 < 0.2 x median 0.02 of mlp_up in 3 other layers");

    SECTION("not with fewer than three layers of the role") {
        ScanReport s;
        s.tensors = {healthy("layers.0.mlp.up_proj.weight"), healthy("layers.1.mlp.up_proj.weight", 0.003)};
        judge(s);
        CHECK(s.findings.empty());
    }
}

TEST_CASE("dead output rows", "[verdict]") {
    ScanReport r = model();
    tensor(r, up2).dead.dead_rows = 7;
    judge(r);
    const Finding* f = finding(r, "dead_rows", up2);
    REQUIRE(f);
    CHECK(f->severity == Verdict::Degraded);
    CHECK(f->message == up2 + ": 10.9% dead output rows (7 of 64) >= 10%");
    tensor(r, up2).dead.dead_rows = 32;
    judge(r);
    f = finding(r, "dead_rows", up2);
    REQUIRE(f);
    CHECK(f->severity == Verdict::Collapsed);
    CHECK(f->message == up2 + ": 50.0% dead output rows (32 of 64) >= 50%");
}

TEST_CASE("NaN or Inf in any floating tensor collapses the report", "[verdict]") {
    ScanReport r = model();
    tensor(r, "model.embed_tokens.weight").nan_count = 3;
    tensor(r, "model.embed_tokens.weight").inf_count = 1;
    judge(r);
    const Finding* f = finding(r, "non_finite", "model.embed_tokens.weight");
    REQUIRE(f);
    CHECK(f->severity == Verdict::Collapsed);
    CHECK(f->message == "model.embed_tokens.weight: 3 NaN and 1 Inf values");
    CHECK(r.verdict == Verdict::Collapsed);
    for (const auto& g : r.layers) CHECK(g.verdict == Verdict::Healthy);
}

TEST_CASE("small tensors and biases are not judged", "[verdict]") {
    ScanReport r = model();
    TensorStats& t = tensor(r, up2);
    t.count = 255;
    t.std = 0;
    judge(r);
    CHECK_FALSE(finding(r, "std_below", up2));
    r.thresholds.min_elements = 16;
    judge(r);
    CHECK(finding(r, "std_below", up2));
}

TEST_CASE("findings come most severe first, then by layer", "[verdict]") {
    ScanReport r = model();
    tensor(r, "model.layers.3.mlp.down_proj.weight").ternary.zero = 0.6;  // degraded
    tensor(r, "model.layers.1.mlp.down_proj.weight").ternary.zero = 0.6;  // degraded
    tensor(r, "model.layers.2.self_attn.q_proj.weight").ternary.zero = 0.9;  // collapsed
    judge(r);
    REQUIRE(r.findings.size() == 3);
    CHECK(r.findings[0].severity == Verdict::Collapsed);
    CHECK(r.findings[1].subject == "model.layers.1.mlp.down_proj.weight");
    CHECK(r.findings[2].subject == "model.layers.3.mlp.down_proj.weight");
    CHECK(r.verdict == Verdict::Collapsed);
}

TEST_CASE("thresholds go to JSON and back", "[thresholds]") {
    Thresholds t;
    t.collapsed_std = 2e-4;
    t.min_elements = 1000;
    auto j = thresholds_to_json(t);
    std::vector<std::string> keys;
    for (auto& [k, v] : j.items()) keys.push_back(k);
    CHECK(keys == std::vector<std::string>{"collapsed_std", "collapsed_zero_frac", "degraded_zero_frac",
                                           "collapsed_role_ratio", "degraded_role_ratio", "dead_rows_degraded",
                                           "dead_rows_collapsed", "min_elements"});
    Thresholds back = thresholds_from_json(nlohmann::json::parse(j.dump()));
    CHECK(back.collapsed_std == 2e-4);
    CHECK(back.min_elements == 1000);
    CHECK(back.degraded_zero_frac == t.degraded_zero_frac);
    CHECK(thresholds_to_json(back) == j);
}

TEST_CASE("thresholds from JSON override only the keys given", "[thresholds]") {
    Thresholds base;
    base.dead_rows_degraded = 0.3;
    Thresholds t = thresholds_from_json(nlohmann::json{{"collapsed_zero_frac", 0.9}}, base);
    CHECK(t.collapsed_zero_frac == 0.9);
    CHECK(t.dead_rows_degraded == 0.3);
    CHECK(t.collapsed_std == 1e-3);
}

TEST_CASE("unknown or ill-typed thresholds are errors", "[thresholds]") {
    try {
        thresholds_from_json(nlohmann::json{{"collapsed_stdev", 1.0}});
        FAIL("no error");
    } catch (const bitfsck::Error& e) {
        std::string m = e.what();
        CHECK(m.rfind("unknown threshold 'collapsed_stdev' (known: collapsed_std, ", 0) == 0);
        CHECK(m.find("min_elements") != std::string::npos);
    }
    CHECK_THROWS_AS(thresholds_from_json(nlohmann::json{{"collapsed_std", "small"}}), bitfsck::Error);
    CHECK_THROWS_AS(thresholds_from_json(nlohmann::json{{"min_elements", -1}}), bitfsck::Error);
    CHECK_THROWS_AS(thresholds_from_json(nlohmann::json::array()), bitfsck::Error);
}
