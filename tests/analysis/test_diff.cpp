#include <catch2/catch.hpp>

#include <cmath>
#include <mutex>
#include <span>

#include "bitfsck/analysis/diff.hpp"
#include "bitfsck/analysis/report_json.hpp"
#include "safetensors_fixture.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::analysis;

namespace {

io::TensorData data(const std::vector<float>& v, std::vector<std::int64_t> shape) {
    return io::TensorData(std::as_bytes(std::span(v)), io::DType::F32, std::move(shape));
}

// transitions[from + 1][to + 1]
std::uint64_t moved(const TransitionMatrix& m, int from, int to) { return m[from + 1][to + 1]; }

}  // namespace

TEST_CASE("code transitions, flips and relative L2 of two tensors", "[diff]") {
    // A: gamma 1, codes +1 -1 +1 -1 | +1 -1 +1 -1.
    std::vector<float> a{1, -1, 1, -1, 1, -1, 1, -1};
    // B: gamma 0.76875 (its own scale), codes +1 -1 0 -1 | -1 -1 +1 0.
    std::vector<float> b{1, -1, 0.1f, -1, -1, -1, 1, 0.05f};
    TensorDiff d = diff_tensors("w", data(a, {2, 4}), data(b, {2, 4}), Quantizer::BitNet);
    REQUIRE(d.compared);
    CHECK(d.count == 8);
    CHECK(d.absmean_a == Approx(1.0));
    CHECK(d.absmean_b == Approx(6.15 / 8).epsilon(1e-6));
    CHECK(d.scale_b == Approx(d.absmean_b));
    CHECK(moved(d.transitions, 1, 1) == 2);
    CHECK(moved(d.transitions, -1, -1) == 3);
    CHECK(moved(d.transitions, 1, 0) == 1);
    CHECK(moved(d.transitions, 1, -1) == 1);
    CHECK(moved(d.transitions, -1, 0) == 1);
    CHECK(moved(d.transitions, 0, 0) == 0);
    CHECK(d.flips == 3);
    CHECK(d.flip_rate == Approx(3.0 / 8));
    CHECK(d.rel_l2 == Approx(std::sqrt((0.9 * 0.9 + 4 + 1.05 * 1.05) / 8)).epsilon(1e-6));
    CHECK(d.norm_a == Approx(std::sqrt(8.0)));
    CHECK(d.rows == 2);
    CHECK(d.dead_rows_a == 0);
    CHECK(d.dead_rows_b == 0);
}

TEST_CASE("each side is quantized with its own scale", "[diff]") {
    // B is A scaled by 1/1000: same codes, no flips, but rel L2 near 1.
    std::vector<float> a = test::gaussian(64 * 16, 0.02, 7);
    std::vector<float> b(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) b[i] = a[i] / 1000;
    TensorDiff d = diff_tensors("w", data(a, {64, 16}), data(b, {64, 16}), Quantizer::Distillix);
    CHECK(d.flips == 0);
    CHECK(d.rel_l2 == Approx(0.999).epsilon(1e-4));
    // B's gamma (~1.6e-5) is still above BitNet's 1e-5 floor; 100x smaller it is below, the scale
    // sticks at the floor and every code of B snaps to 0: that is how BitNet sees a shrinking layer.
    for (auto& x : b) x /= 100;
    TensorDiff floored = diff_tensors("w", data(a, {64, 16}), data(b, {64, 16}), Quantizer::BitNet);
    CHECK(floored.scale_b == Approx(1e-5));
    CHECK(floored.flips > 0);
    CHECK(moved(floored.transitions, 1, 0) + moved(floored.transitions, -1, 0) == floored.flips);
}

TEST_CASE("rows whose codes all become zero are new dead rows", "[diff]") {
    std::vector<float> a = test::gaussian(8 * 32, 0.02, 3);
    std::vector<float> b = a;
    for (int c = 0; c < 32; ++c) {
        b[2 * 32 + c] *= 1e-4f;
        b[5 * 32 + c] *= 1e-4f;
    }
    TensorDiff d = diff_tensors("w", data(a, {8, 32}), data(b, {8, 32}), Quantizer::BitNet);
    CHECK(d.dead_rows_a == 0);
    CHECK(d.dead_rows_b == 2);
    CHECK(d.new_dead_rows == 2);
    // Going back revives them: nothing newly dead.
    TensorDiff back = diff_tensors("w", data(b, {8, 32}), data(a, {8, 32}), Quantizer::BitNet);
    CHECK(back.dead_rows_a == 2);
    CHECK(back.new_dead_rows == 0);
}

TEST_CASE("vectors have no rows; non-finite pairs are skipped and counted", "[diff]") {
    std::vector<float> a{1, 2, NAN, 4};
    std::vector<float> b{1, 2, 3, INFINITY};
    TensorDiff d = diff_tensors("v", data(a, {4}), data(b, {4}), Quantizer::BitNet);
    CHECK(d.rows == 0);
    CHECK(d.non_finite == 2);
    CHECK(d.count == 2);
    CHECK(d.rel_l2 == Approx(0.0));
    CHECK(std::isfinite(d.absmean_a));
}

TEST_CASE("a tensor that was all zero has infinite relative change", "[diff]") {
    std::vector<float> zeros(16, 0.0f), ones(16, 1.0f);
    CHECK(std::isinf(diff_tensors("z", data(zeros, {4, 4}), data(ones, {4, 4}), Quantizer::BitNet).rel_l2));
    CHECK(diff_tensors("z", data(zeros, {4, 4}), data(zeros, {4, 4}), Quantizer::BitNet).rel_l2 == 0.0);
}

TEST_CASE("different shapes are noted, not compared", "[diff]") {
    std::vector<float> v(32, 1.0f);
    TensorDiff d = diff_tensors("w", data(v, {4, 8}), data(v, {8, 4}), Quantizer::BitNet);
    CHECK_FALSE(d.compared);
    CHECK(d.shape_b == std::vector<std::int64_t>{8, 4});
    CHECK(d.note == "shape [4, 8] vs [8, 4]");
    CHECK(d.flips == 0);
}

TEST_CASE("two checkpoints on disk are matched by tensor name", "[diff][files]") {
    test::TempDir tmp;
    std::vector<float> w = test::gaussian(16 * 16, 0.02, 11);
    std::vector<float> w2 = w;
    for (std::size_t i = 0; i < w2.size(); i += 4) w2[i] = -w2[i];  // flips every 4th sign
    test::write_safetensors(tmp / "a.safetensors", {{"layers.0.mlp.up_proj.weight", {16, 16}, w},
                                                    {"only_a", {4}, {1, 2, 3, 4}},
                                                    {"reshaped", {2, 8}, std::vector<float>(16, 1.0f)}});
    test::write_safetensors(tmp / "b.safetensors", {{"reshaped", {8, 2}, std::vector<float>(16, 1.0f)},
                                                    {"layers.0.mlp.up_proj.weight", {16, 16}, w2},
                                                    {"only_b", {2}, {5, 6}}});
    auto a = io::Checkpoint::open(tmp / "a.safetensors");
    auto b = io::Checkpoint::open(tmp / "b.safetensors");
    std::uint64_t last_done = 0, last_total = 0;
    std::mutex m;
    CheckpointDiff d = diff_checkpoints(a, b, Quantizer::BitNet, 2, [&](const Progress& p) {
        std::lock_guard lock(m);
        last_done = std::max(last_done, p.done);
        last_total = p.total;
        return true;
    });
    REQUIRE(d.tensors.size() == 4);
    CHECK(d.tensors[0].name == "layers.0.mlp.up_proj.weight");
    CHECK(d.tensors[1].name == "only_a");
    CHECK(d.tensors[1].only_in_a);
    CHECK(d.tensors[2].name == "reshaped");
    CHECK_FALSE(d.tensors[2].compared);
    CHECK(d.tensors[2].note.find("[2, 8] vs [8, 2]") != std::string::npos);
    CHECK(d.tensors[3].name == "only_b");
    CHECK(d.tensors[3].only_in_b);

    const TensorDiff& t = d.tensors[0];
    REQUIRE(t.compared);
    // Negating a value swaps +1 and -1 codes and leaves zeros alone; gamma is unchanged.
    std::uint64_t expected_flips = 0;
    for (std::size_t i = 0; i < w.size(); i += 4) expected_flips += ternary_code(w[i], effective_scale(Quantizer::BitNet, t.absmean_a)) != 0;
    CHECK(t.flips == expected_flips);
    CHECK(moved(t.transitions, 1, -1) + moved(t.transitions, -1, 1) == expected_flips);
    CHECK(t.absmean_a == Approx(t.absmean_b));

    CHECK(d.totals.tensors_compared == 1);
    CHECK(d.totals.only_in_a == 1);
    CHECK(d.totals.only_in_b == 1);
    CHECK(d.totals.not_compared == 1);
    CHECK(d.totals.flips == t.flips);
    CHECK(d.totals.rel_l2 == Approx(t.rel_l2));
    CHECK(last_total == 2 * 16 * 16 * sizeof(float));
    CHECK(last_done == last_total);

    auto j = to_json(d);
    CHECK(j["file_a"] == (tmp / "a.safetensors").string());
    CHECK(j["tensors"][0]["flips"] == t.flips);
}
