// The induction probe against what PyTorch measured (sample_ckpts/make_models.py, make_induction):
// a 2-layer ternary student trained on repeated random sequences has an induction head (layer 1,
// head 0) that the probe must find as its top head with IPMR > 0.9 on the repeated-random probe; a
// freshly initialised one of the same architecture has none. Every head's IPMR must match PyTorch's,
// quantized and unquantized, on the same batch (make_models.py reproduces the probe's mt19937_64). Also `bitfsck perplexity` end to end
// against the loss PyTorch computed for the sample run.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "bitfsck/model/induction.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::model;

namespace {
std::filesystem::path models_dir() { return test::samples_dir() / "models"; }

const nlohmann::json& expected() {
    static const nlohmann::json doc = test::read_json(models_dir() / "induction.expected.json");
    return doc;
}

InductionOptions options(bool quantize) {
    InductionOptions o;
    if (!quantize) o.load.config.overrides["quantize"] = false;
    return o;
}

// The (layer, head) with the highest IPMR in a PyTorch matrix; the first wins a tie, as rank_heads.
std::pair<std::int64_t, std::int64_t> torch_top(const nlohmann::json& m) {
    std::pair<std::int64_t, std::int64_t> best{0, 0};
    double v = -1;
    for (std::size_t l = 0; l < m.size(); ++l)
        for (std::size_t h = 0; h < m[l].size(); ++h)
            if (m[l][h].get<double>() > v) {
                v = m[l][h].get<double>();
                best = {static_cast<std::int64_t>(l), static_cast<std::int64_t>(h)};
            }
    return best;
}

// Every head's IPMR as PyTorch measured it on the same batch. An argmax may flip on a near tie
// between the two implementations' last bits: allow two positions of the probe's ~600.
void check_matches_torch(const InductionReport& r, const nlohmann::json& m) {
    REQUIRE(static_cast<std::int64_t>(m.size()) == r.layers);
    const double tol = 2.0 / double(r.eligible_positions) + 1e-9;
    for (std::int64_t l = 0; l < r.layers; ++l) {
        REQUIRE(static_cast<std::int64_t>(m[l].size()) == r.heads);
        for (std::int64_t h = 0; h < r.heads; ++h) {
            INFO("layer " << l << " head " << h);
            CHECK(std::abs(r.metrics[l][h].ipmr - m[l][h].get<double>()) <= tol);
        }
    }
}
}  // namespace

TEST_CASE("the repeated-random probe feeds the batch PyTorch measured on") {
    const auto& p = expected()["probe"];
    REQUIRE(p["bos"] == false);
    auto ids = repeated_random_tokens(p["batch"].get<std::int64_t>(), p["seq_len"].get<std::int64_t>(), 128, std::nullopt,
                                      std::nullopt, p["seed"].get<std::uint64_t>());
    std::vector<std::int64_t> want;
    for (const auto& row : p["input_ids"])
        for (const auto& v : row) want.push_back(v.get<std::int64_t>());
    CHECK(ids == want);
}

TEST_CASE("a freshly initialised model has no induction head") {
    auto ck = io::Checkpoint::open(models_dir() / "induction_fresh.pt");
    for (bool quantize : {true, false}) {
        INFO("quantize " << quantize);
        auto r = run_induction(ck, options(quantize));
        REQUIRE_FALSE(r.top.empty());
        INFO("top IPMR " << r.top.front().metrics.ipmr);
        CHECK(r.top.front().metrics.ipmr < 0.1);
        CHECK(r.specialists == 0);
        check_matches_torch(r, expected()["fresh"][quantize ? "ipmr_quantized" : "ipmr"]);
    }
}

TEST_CASE("the probe finds the induction head of a model trained on repeated sequences") {
    auto ck = io::Checkpoint::open(models_dir() / "induction_trained.pt");
    const auto& exp = expected()["trained"];
    const std::int64_t head_layer = exp["induction_head"]["layer"], head = exp["induction_head"]["head"];
    // The model was trained ternary (QAT): its head lives in the quantized forward, bitfsck's default.
    auto r = run_induction(ck, options(true));
    CHECK(r.probe == Probe::RepeatedRandom);
    CHECK_FALSE(r.bos);
    CHECK(r.eligible_positions == expected()["probe"]["eligible_positions"].get<std::int64_t>());
    REQUIRE_FALSE(r.top.empty());
    const auto& top = r.top.front();
    INFO("top head " << top.layer << "." << top.head << " IPMR " << top.metrics.ipmr << " induction " << top.metrics.induction);
    CHECK(top.layer == head_layer);
    CHECK(top.head == head);
    CHECK(torch_top(exp["ipmr_quantized"]) == std::pair{head_layer, head});
    CHECK(top.metrics.ipmr > 0.9);
    CHECK(top.metrics.induction > 0.5);  // most of its attention on the token after the previous occurrence
    REQUIRE(r.top.size() > 1);
    CHECK(r.top[1].metrics.ipmr < top.metrics.ipmr - 0.1);  // a clear top head
    CHECK(r.specialists >= 1);
    check_matches_torch(r, exp["ipmr_quantized"]);
}

TEST_CASE("unquantized (--no-quant), the trained model's heads match PyTorch's") {
    // The same weights in full precision lose most of the head: what quantization-aware training
    // built depends on the ternary rounding. bitfsck must agree with PyTorch head by head.
    auto ck = io::Checkpoint::open(models_dir() / "induction_trained.pt");
    const auto& exp = expected()["trained"];
    auto r = run_induction(ck, options(false));
    CHECK_FALSE(r.config.quantize);
    check_matches_torch(r, exp["ipmr"]);
    const std::size_t l = exp["induction_head"]["layer"], h = exp["induction_head"]["head"];
    const double q = exp["ipmr_quantized"][l][h].get<double>();
    INFO("head " << l << "." << h << ": torch quantized " << q << ", bitfsck unquantized " << r.metrics[l][h].ipmr);
    CHECK(r.metrics[l][h].ipmr < q - 0.1);
}

TEST_CASE("bitfsck induction --json reports the trained model's induction head as the top head") {
    const auto file = models_dir() / "induction_trained.pt";
    auto r = test::run_command(test::quote(test::cli_path()) + " induction --json " + test::quote(file));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto j = nlohmann::json::parse(r.out);
    REQUIRE(j.is_array());
    REQUIRE(j.size() == 1);
    // docs/json-output.md: every document opens with schema_version, then tool {name, version}.
    const auto ordered = nlohmann::ordered_json::parse(r.out)[0];
    CHECK(ordered.begin().key() == "schema_version");
    CHECK(ordered["tool"]["name"] == "bitfsck");
    const auto& rep = j[0];
    CHECK(rep["probe"]["name"] == "repeated_random");
    CHECK(rep["probe"]["seed"] == expected()["probe"]["seed"]);
    REQUIRE_FALSE(rep["top_heads"].empty());
    const auto& top = rep["top_heads"][0];
    const auto want = torch_top(expected()["trained"]["ipmr_quantized"]);
    CHECK(top["layer"].get<std::int64_t>() == want.first);
    CHECK(top["head"].get<std::int64_t>() == want.second);
    CHECK(top["ipmr"].get<double>() > 0.9);
    CHECK(rep["specialist_heads"].get<std::int64_t>() >= 1);
}

TEST_CASE("bitfsck perplexity reproduces PyTorch's validation loss of the training run") {
    auto exp = test::read_json(test::samples_dir() / "run" / "run.expected.json");
    const auto& last = exp["checkpoints"].back();
    const auto file = test::samples_dir() / "run" / last["file"].get<std::string>();
    // bitnet_reference.py quantizes activations with 127/clamp(max|x|, 1e-5): --act-eps clamp.
    auto r = test::run_command(test::quote(test::cli_path()) + " perplexity --json --act-eps clamp --seq-len 64 --batch 64 --tokens " +
                               test::quote(test::samples_dir() / "run" / "val.bin") + " " + test::quote(file));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto j = nlohmann::json::parse(r.out);
    CHECK(nlohmann::ordered_json::parse(r.out).begin().key() == "schema_version");
    CHECK(j["tool"]["name"] == "bitfsck");
    CHECK(j["windows"] == exp["val_windows"]["count"]);
    const double want = last["val_loss"].get<double>();
    INFO("bitfsck " << j["loss"].get<double>() << " vs torch " << want);
    CHECK(std::abs(j["loss"].get<double>() - want) < 1e-4 * std::max(1.0, want));
}
