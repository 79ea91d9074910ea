// The torch-free parts of bitfsck_model: metric definitions, probe tokens, sampling, the
// degeneration check, token files and config handling.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "bitfsck/model/generate.hpp"
#include "bitfsck/model/induction.hpp"
#include "bitfsck/model/tokens.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::model;

TEST_CASE("previous_occurrence finds the most recent earlier position") {
    std::vector<std::int64_t> t{5, 7, 5, 9, 7, 5};
    auto p = previous_occurrence(t);
    REQUIRE(p == std::vector<std::int64_t>{-1, -1, 0, -1, 1, 2});
}

// Attention of one head that always looks at a fixed offset from the query (clamped to 0).
static std::vector<float> offset_attention(std::int64_t heads, std::int64_t T, const std::vector<std::function<std::int64_t(std::int64_t)>>& target) {
    std::vector<float> p(static_cast<std::size_t>(heads * T * T), 0.0f);
    for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t t = 0; t < T; ++t) p[(h * T + t) * T + std::clamp<std::int64_t>(target[h](t), 0, t)] = 1.0f;
    return p;
}

TEST_CASE("induction metrics: a perfect induction head, a previous-token head and a duplicate-token head") {
    // a b c d a b c d: eligible t = 5, 6, 7 (j = 1, 2, 3; j+1 < t). t = 4 has j = 0, j+1 = 1 < 4: eligible too.
    std::vector<std::int64_t> tokens{1, 2, 3, 4, 1, 2, 3, 4};
    const std::int64_t T = 8;
    auto prev = previous_occurrence(tokens);
    auto p = offset_attention(3, T, {
        [&](std::int64_t t) { return prev[t] >= 0 ? prev[t] + 1 : 0; },  // induction
        [&](std::int64_t t) { return t - 1; },                           // previous token
        [&](std::int64_t t) { return prev[t] >= 0 ? prev[t] : t; },      // duplicate token
    });
    InductionAccumulator acc(1, 3);
    acc.count_row(tokens);
    acc.add(0, tokens, p.data(), 3, T);
    REQUIRE(acc.eligible() == 4);
    REQUIRE(acc.previous() == 7);
    auto m = acc.result();
    CHECK(m[0][0].ipmr == Approx(1.0));
    CHECK(m[0][0].induction == Approx(1.0));
    CHECK(m[0][0].previous_token == Approx(1.0 / 7));  // only at t = 1, where it attends to 0 = t-1
    CHECK(m[0][1].ipmr == Approx(0.0));
    CHECK(m[0][1].previous_token == Approx(1.0));
    CHECK(m[0][2].duplicate_token == Approx(1.0));
    CHECK(m[0][2].ipmr == Approx(0.0));
}

TEST_CASE("induction metrics: means are NaN, not 0, when no position is eligible") {
    std::vector<std::int64_t> tokens{1, 2, 3, 4};
    std::vector<float> p(16, 0.25f);
    InductionAccumulator acc(1, 1);
    acc.count_row(tokens);
    acc.add(0, tokens, p.data(), 1, 4);
    auto m = acc.result();
    CHECK(std::isnan(m[0][0].ipmr));
    CHECK(m[0][0].previous_token == Approx(0.25));
}

TEST_CASE("induction metrics reject attention of the wrong shape") {
    std::vector<std::int64_t> tokens{1, 2};
    std::vector<float> p(8, 0.5f);
    InductionAccumulator acc(2, 2);
    REQUIRE_THROWS_AS(acc.add(2, tokens, p.data(), 2, 2), ModelError);
    REQUIRE_THROWS_AS(acc.add(0, tokens, p.data(), 1, 2), ModelError);
}

TEST_CASE("repeated random tokens: two copies, BOS first, no special ids, fixed by the seed") {
    auto a = repeated_random_tokens(3, 10, 20, 0, 1, 42);
    auto b = repeated_random_tokens(3, 10, 20, 0, 1, 42);
    auto c = repeated_random_tokens(3, 10, 20, 0, 1, 43);
    REQUIRE(a.size() == 3 * 21);
    REQUIRE(a == b);
    REQUIRE(a != c);
    for (int r = 0; r < 3; ++r) {
        const auto* row = a.data() + r * 21;
        CHECK(row[0] == 0);
        for (int i = 1; i <= 10; ++i) {
            CHECK(row[i] == row[i + 10]);
            CHECK(row[i] >= 2);
            CHECK(row[i] < 20);
        }
    }
    // The same draw on every platform: the first ids of seed 1234 over 256 are pinned.
    auto d = repeated_random_tokens(1, 4, 256, std::nullopt, std::nullopt, 1234);
    std::mt19937_64 rng(1234);
    for (int i = 0; i < 4; ++i) CHECK(d[i] == static_cast<std::int64_t>(rng() % 256));
}

TEST_CASE("rank_heads orders by IPMR and counts specialists at the threshold") {
    InductionReport r;
    r.layers = 2, r.heads = 2;
    r.specialist_threshold = 0.05;
    r.metrics = {{{0.01, 0.1, 0, 0}, {0.05, 0.2, 0, 0}}, {{0.9, 0.8, 0, 0}, {0.05, 0.3, 0, 0}}};
    rank_heads(r, 3);
    REQUIRE(r.top.size() == 3);
    CHECK((r.top[0].layer == 1 && r.top[0].head == 0));
    CHECK((r.top[1].layer == 1 && r.top[1].head == 1));  // tie on IPMR: higher induction score first
    CHECK(r.specialists == 3);
}

TEST_CASE("sample_token: greedy is argmax, sampling follows the seed and respects top-k") {
    std::vector<float> logits{0.1f, 3.0f, 2.9f, -1.0f};
    std::mt19937_64 rng(0);
    CHECK(sample_token(logits, 0, 0, 1, rng) == 1);
    std::vector<float> with_nan{NAN, 1.0f, 2.0f};
    CHECK(sample_token(with_nan, 0, 0, 1, rng) == 2);
    std::mt19937_64 r1(5), r2(5);
    for (int i = 0; i < 20; ++i) CHECK(sample_token(logits, 1.0, 0, 1, r1) == sample_token(logits, 1.0, 0, 1, r2));
    std::mt19937_64 r3(9);
    for (int i = 0; i < 200; ++i) {
        auto t = sample_token(logits, 5.0, 2, 1, r3);
        CHECK((t == 1 || t == 2));
    }
    // A tiny nucleus keeps only the most likely token.
    for (int i = 0; i < 50; ++i) CHECK(sample_token(logits, 1.0, 0, 0.01, r3) == 1);
}

TEST_CASE("degeneration check") {
    std::vector<StepStats> fine(40, StepStats{0, 5.0});
    SECTION("varied output passes") {
        std::vector<std::int64_t> g;
        for (int i = 0; i < 40; ++i) g.push_back((i * 7) % 23);
        auto r = check_degeneration(g, fine);
        CHECK_FALSE(r.degenerate);
        CHECK_FALSE(r.broken);
    }
    SECTION("one token repeated") {
        std::vector<std::int64_t> g(40, 7);
        auto r = check_degeneration(g, fine);
        CHECK(r.degenerate);
        CHECK(r.longest_run == 40);
        CHECK(r.top_token == 7);
    }
    SECTION("an n-gram loop") {
        std::vector<std::int64_t> g{9, 8, 7, 6, 5};
        for (int i = 0; i < 10; ++i) g.insert(g.end(), {1, 2, 3});
        auto r = check_degeneration(g, std::vector<StepStats>(g.size(), StepStats{0, 5.0}));
        CHECK(r.degenerate);
        CHECK(r.loop_period == 3);
        CHECK(r.loop_length == 30);
    }
    SECTION("NaN and all-same logits are broken") {
        std::vector<std::int64_t> g;
        for (int i = 0; i < 40; ++i) g.push_back(i);
        std::vector<StepStats> s(40, StepStats{0, 5.0});
        s[3].non_finite = 10;
        s[4].range = 0;
        auto r = check_degeneration(g, s);
        CHECK(r.broken);
        CHECK(r.non_finite_steps == 1);
        CHECK(r.constant_steps == 1);
    }
    CHECK(step_stats(std::vector<float>{1.0f, NAN, 3.0f}).non_finite == 1);
    CHECK(step_stats(std::vector<float>{1.0f, NAN, 3.0f}).range == Approx(2.0));
}

TEST_CASE("token files: raw u16/u32 and .npy") {
    test::TempDir tmp;
    std::string u16{'\x01', '\x00', '\x02', '\x01', '\xff', '\xff'};
    test::write_bytes(tmp / "a.bin", u16);
    CHECK(read_token_file(tmp / "a.bin", TokenDType::U16) == std::vector<std::int64_t>{1, 258, 65535});
    CHECK(read_token_file(tmp / "a.bin", TokenDType::U16, 2) == std::vector<std::int64_t>{1, 258});
    REQUIRE_THROWS_AS(read_token_file(tmp / "a.bin", TokenDType::U32), ModelError);  // 6 bytes: not whole u32

    std::string header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }";
    while ((10 + header.size() + 1) % 64) header += ' ';
    header += '\n';
    std::string npy = std::string("\x93NUMPY\x01\x00", 8);
    npy += static_cast<char>(header.size() & 0xff);
    npy += static_cast<char>(header.size() >> 8);
    npy += header;
    for (std::int32_t v : {3, 70000, 5, 6}) npy.append(reinterpret_cast<const char*>(&v), 4);
    test::write_bytes(tmp / "b.npy", npy);
    CHECK(read_token_file(tmp / "b.npy", TokenDType::U16) == std::vector<std::int64_t>{3, 70000, 5, 6});
    REQUIRE_THROWS_AS(read_token_file(tmp / "missing.bin", TokenDType::U16), io::FileError);
    REQUIRE_THROWS_AS(parse_token_dtype("u8"), ModelError);
}

TEST_CASE("config JSON keys and their aliases") {
    ModelConfig c;
    apply_config_json(c, nlohmann::json{{"n_embd", 64}, {"num_attention_heads", 4}, {"rms_norm_eps", 1e-5}, {"act_quant_eps", "clamp"},
                                        {"weight_quant", "channel"}, {"eos_token_id", {2, 3}}, {"unknown", 1}},
                      "test");
    CHECK(c.hidden_size == 64);
    CHECK(c.num_heads == 4);
    CHECK(c.norm_eps == Approx(1e-5));
    CHECK(c.act_eps == ActEps::Clamp);
    CHECK(c.weight_quant == WeightQuant::PerChannel);
    CHECK(c.eos_token_id == 2);
    REQUIRE_THROWS_WITH(apply_config_json(c, nlohmann::json{{"n_head", "four"}}, "cfg.json"), Catch::Contains("cfg.json") && Catch::Contains("n_head"));
    REQUIRE_THROWS_AS(apply_config_json(c, nlohmann::json{{"weight_quant", "row"}}, "x"), ModelError);
}
