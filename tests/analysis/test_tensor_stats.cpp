#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "bitfsck/analysis/tensor_stats.hpp"
#include "bitfsck/io/error.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::analysis;
using Catch::Matchers::WithinRel;

namespace {

// Owns the bytes an in-memory TensorData points at.
template <typename T>
struct Owned {
    std::vector<T> values;
    io::TensorData data;
    Owned(std::vector<T> v, io::DType dtype, std::vector<std::int64_t> shape)
        : values(std::move(v)),
          data(std::as_bytes(std::span<const T>(values.data(), values.size())), dtype, std::move(shape)) {}
};

TensorStats analyze(const std::vector<double>& v, std::vector<std::int64_t> shape = {},
                    const AnalysisOptions& o = {}) {
    if (shape.empty()) shape = {static_cast<std::int64_t>(v.size())};
    Owned<double> t(v, io::DType::F64, shape);
    return analyze_tensor("t", t.data, o);
}

struct Reference {
    double mean = 0, std = 0, absmean = 0, min = 0, max = 0, zero_frac = 0;
    double neg = 0, zero = 0, pos = 0;
};

// Straightforward float64 statistics over the finite values, with codes from ternary_code().
Reference reference(const std::vector<double>& v, Quantizer q = Quantizer::BitNet, double scale = 0) {
    std::vector<double> f;
    for (double x : v)
        if (std::isfinite(x)) f.push_back(x);
    Reference r;
    double n = static_cast<double>(f.size());
    for (double x : f) {
        r.mean += x;
        r.absmean += std::fabs(x);
        r.zero_frac += x == 0;
    }
    r.mean /= n;
    r.absmean /= n;
    r.zero_frac /= n;
    double ss = 0;
    for (double x : f) ss += (x - r.mean) * (x - r.mean);
    r.std = std::sqrt(ss / (n - 1));
    r.min = *std::min_element(f.begin(), f.end());
    r.max = *std::max_element(f.begin(), f.end());
    double g = scale > 0 ? scale : effective_scale(q, r.absmean);
    std::uint64_t counts[3] = {0, 0, 0};
    for (double x : f) counts[ternary_code(x, g) + 1]++;
    r.neg = static_cast<double>(counts[0]) / n;
    r.zero = static_cast<double>(counts[1]) / n;
    r.pos = static_cast<double>(counts[2]) / n;
    return r;
}

std::vector<double> gaussian(std::size_t n, double sigma, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> d(0.0, sigma);
    std::vector<double> v(n);
    for (double& x : v) x = d(rng);
    return v;
}

void check_against_reference(const TensorStats& s, const std::vector<double>& v) {
    Reference r = reference(v);
    CHECK_THAT(s.mean, WithinRel(r.mean, 1e-9));
    CHECK_THAT(s.std, WithinRel(r.std, 1e-12));
    CHECK_THAT(s.absmean, WithinRel(r.absmean, 1e-12));
    CHECK(s.min == r.min);
    CHECK(s.max == r.max);
    CHECK(s.zero_frac == r.zero_frac);
    CHECK_THAT(s.ternary.neg, WithinRel(r.neg, 1e-12));
    CHECK_THAT(s.ternary.zero, WithinRel(r.zero, 1e-12));
    CHECK_THAT(s.ternary.pos, WithinRel(r.pos, 1e-12));
}

}  // namespace

TEST_CASE("ternary_code rounds half to even before clamping", "[quantizer]") {
    CHECK(ternary_code(0.5, 1.0) == 0);
    CHECK(ternary_code(-0.5, 1.0) == 0);
    CHECK(ternary_code(std::nextafter(0.5, 1.0), 1.0) == 1);
    CHECK(ternary_code(1.5, 1.0) == 1);  // rounds to 2, clamped
    CHECK(ternary_code(-2.5, 1.0) == -1);
    CHECK(ternary_code(0.0, 1.0) == 0);
}

TEST_CASE("quantizer names and effective scales", "[quantizer]") {
    CHECK(quantizer_name(Quantizer::BitNet) == "bitnet");
    CHECK(quantizer_name(Quantizer::Distillix) == "distillix");
    CHECK(quantizer_from_name("distillix") == Quantizer::Distillix);
    CHECK_FALSE(quantizer_from_name("BitNet").has_value());
    CHECK(effective_scale(Quantizer::BitNet, 1e-7) == 1e-5);
    CHECK(effective_scale(Quantizer::BitNet, 0.25) == 0.25);
    CHECK(effective_scale(Quantizer::Distillix, 0.25) == 0.25 + 1e-8);
}

TEST_CASE("values exactly half a scale quantize to zero", "[tensor_stats]") {
    // mean|W| = 8/8 = 1, so W/g is exact: 0.5 -> 0 (half to even), 1.5 -> 2 -> 1.
    std::vector<double> v = {0.5, -0.5, 1.5, -1.5, 2, -2, 0, 0};
    TensorStats s = analyze(v);
    REQUIRE(s.absmean == 1.0);
    CHECK(s.ternary.quantizer == Quantizer::BitNet);
    CHECK(s.ternary.scale == 1.0);
    CHECK(s.ternary.zero == 0.5);
    CHECK(s.ternary.pos == 0.25);
    CHECK(s.ternary.neg == 0.25);
    CHECK(s.ternary_other.quantizer == Quantizer::Distillix);
    CHECK(s.ternary_other.scale == 1.0 + 1e-8);
    CHECK(s.ternary_other.zero == 0.5);
    CHECK(s.zero_frac == 0.25);
}

TEST_CASE("codes agree with ternary_code for values at the rounding boundary", "[tensor_stats]") {
    // Below BitNet's floor g is exactly 1e-5 whatever the data, so values can sit within a
    // few ulps of g/2 on either side: the comparison shortcut must match division + rounding.
    std::vector<double> v;
    for (int i = 0; i < 200; ++i) v.push_back(i % 2 ? 1e-6 : -1e-6);
    const double h = 0.5 * 1e-5;
    for (int k = -20; k <= 20; ++k) {
        double w = h;
        for (int u = 0; u < std::abs(k); ++u) w = std::nextafter(w, k < 0 ? 0.0 : 1.0);
        v.push_back(w);
        v.push_back(-w);
    }
    TensorStats s = analyze(v);
    REQUIRE(s.ternary.scale == 1e-5);
    Reference r = reference(v, Quantizer::BitNet, 1e-5);
    CHECK(s.ternary.zero == r.zero);
    CHECK(s.ternary.neg == r.neg);
    CHECK(s.ternary.pos == r.pos);
    CHECK(r.zero > 0.5);  // both sides of the boundary are populated
    CHECK(r.pos > 0.01);
    Reference rd = reference(v, Quantizer::Distillix, s.ternary_other.scale);
    CHECK(s.ternary_other.zero == rd.zero);
    CHECK(s.ternary_other.pos == rd.pos);
}

TEST_CASE("statistics match a plain float64 computation", "[tensor_stats]") {
    std::vector<double> v = {3, -1, 4, 1, -5, 9, 2, -6, 0, 0};
    TensorStats s = analyze(v);
    check_against_reference(s, v);
    CHECK(s.count == 10);
    CHECK(s.finite_count == 10);
    CHECK(s.dtype == "float64");
}

TEST_CASE("a latent Gaussian tensor gives about 31% ternary zeros", "[tensor_stats]") {
    auto v = gaussian(100000, 0.02, 1234);
    TensorStats s = analyze(v, {250, 400});
    check_against_reference(s, v);
    CHECK(s.ternary.zero == Approx(0.310).margin(0.01));
    CHECK(s.std == Approx(0.02).epsilon(0.02));
    CHECK(s.absmean == Approx(0.02 * std::sqrt(2 / M_PI)).epsilon(0.02));
    CHECK_FALSE(s.lattice.is_ternary);
    CHECK(s.lattice.distinct_capped);
    CHECK(s.lattice.distinct_values == 4096);
    CHECK(s.lattice.rms_rel > 0.2);  // far from any lattice
    CHECK(s.dead.rows == 250);
    CHECK(s.dead.cols == 400);
    CHECK(s.dead.dead_rows == 0);
    CHECK(s.dead.dead_cols == 0);
    CHECK_FALSE(s.dead.all_zero);
}

TEST_CASE("float32 tensors are read through the dtype conversion", "[tensor_stats]") {
    auto d = gaussian(70000, 1.0, 99);  // more than one block
    std::vector<float> f(d.begin(), d.end());
    Owned<float> t(f, io::DType::F32, {70000});
    TensorStats s = analyze_tensor("w", t.data);
    std::vector<double> back(f.begin(), f.end());
    check_against_reference(s, back);
    CHECK(s.dtype == "float32");
    CHECK(s.dead.rows == 0);  // 1-D: no matrix view
}

TEST_CASE("NaN and Inf are counted and left out of the statistics", "[tensor_stats]") {
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    std::vector<double> v = {1, nan, 2, inf, -inf, 3};
    TensorStats s = analyze(v, {2, 3});
    CHECK(s.count == 6);
    CHECK(s.finite_count == 3);
    CHECK(s.nan_count == 1);
    CHECK(s.inf_count == 2);
    CHECK(s.mean == 2.0);
    CHECK(s.std == 1.0);
    CHECK(s.min == 1.0);
    CHECK(s.max == 3.0);
    CHECK(s.absmean == 2.0);
    // A non-finite value never has a zero code: column 1 (NaN, Inf) and 2 (2, -Inf) stay alive.
    CHECK(s.dead.dead_rows == 0);
    CHECK(s.dead.dead_cols == 0);
    std::uint64_t binned = 0;
    for (auto c : s.values.counts) binned += c;
    CHECK(binned == 3);
}

TEST_CASE("non-finite values spread over many blocks", "[tensor_stats]") {
    auto v = gaussian(100000, 1.0, 5);
    for (std::size_t i = 0; i < v.size(); i += 9973) v[i] = std::numeric_limits<double>::quiet_NaN();
    v[50000] = -std::numeric_limits<double>::infinity();
    TensorStats s = analyze(v, {100, 1000});
    check_against_reference(s, v);
    CHECK(s.nan_count == 11);
    CHECK(s.inf_count == 1);
    CHECK(s.finite_count == 100000 - 12);
}

TEST_CASE("a tensor of only NaN does not crash", "[tensor_stats]") {
    std::vector<double> v(10, std::numeric_limits<double>::quiet_NaN());
    TensorStats s = analyze(v, {2, 5});
    CHECK(s.finite_count == 0);
    CHECK(s.nan_count == 10);
    CHECK(s.mean == 0);
    CHECK(s.std == 0);
    CHECK_FALSE(s.dead.all_zero);
    CHECK(s.dead.dead_rows == 0);
}

TEST_CASE("an all-zero matrix", "[tensor_stats]") {
    std::vector<double> v(4 * 8, 0.0);
    v[3] = -0.0;
    TensorStats s = analyze(v, {4, 8});
    CHECK(s.dead.all_zero);
    CHECK(s.zero_frac == 1.0);
    CHECK(s.std == 0);
    CHECK(s.absmean == 0);
    CHECK(s.ternary.zero == 1.0);
    CHECK(s.ternary.scale == 1e-5);
    CHECK(s.dead.dead_rows == 4);
    CHECK(s.dead.dead_cols == 8);
    CHECK(s.lattice.distinct_values == 1);
    CHECK_FALSE(s.lattice.is_ternary);
    std::uint64_t logged = 0;
    for (auto c : s.log_magnitude.counts) logged += c;
    CHECK(logged == 0);  // log10 0 has no bin
}

TEST_CASE("an empty tensor", "[tensor_stats]") {
    TensorStats s = analyze({}, {0, 16});
    CHECK(s.count == 0);
    CHECK(s.finite_count == 0);
    CHECK_FALSE(s.dead.all_zero);
}

TEST_CASE("a tensor stored on a per-tensor ternary lattice", "[tensor_stats]") {
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> code(-1, 1);
    const float s = 0.0123f;
    std::vector<float> f(64 * 128);
    for (float& x : f) x = static_cast<float>(code(rng)) * s;
    Owned<float> t(f, io::DType::F32, {64, 128});
    TensorStats st = analyze_tensor("w", t.data);
    CHECK(st.lattice.is_ternary);
    CHECK_FALSE(st.lattice.per_channel);
    CHECK(st.lattice.distinct_values == 3);
    CHECK(st.lattice.scale == static_cast<double>(s));
    CHECK(st.lattice.rms_rel == 0);
    // Re-quantizing a ternary tensor reproduces its codes: the zero codes are the zeros.
    CHECK(st.ternary.zero == st.zero_frac);
}

TEST_CASE("a tensor stored ternary per output channel", "[tensor_stats]") {
    std::mt19937 rng(4);
    std::uniform_int_distribution<int> code(-1, 1);
    const std::int64_t rows = 48, cols = 1500;  // rows cross block boundaries
    std::vector<double> v(rows * cols);
    double scale_sum = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
        double s = 0.01 * (1 + r);
        scale_sum += s;
        for (std::int64_t c = 0; c < cols; ++c) v[r * cols + c] = code(rng) * s;
        v[r * cols] = s;  // every row has a non-zero value
    }
    TensorStats st = analyze(v, {rows, cols});
    CHECK(st.lattice.is_ternary);
    CHECK(st.lattice.per_channel);
    CHECK_THAT(st.lattice.scale, WithinRel(scale_sum / rows, 1e-12));
    CHECK(st.lattice.rms_rel == 0);
    CHECK(st.lattice.distinct_capped == false);
    CHECK(st.lattice.distinct_values == 1 + 2 * rows);

    SECTION("one perturbed value breaks the fit") {
        v[7 * cols + 11] = 0.5 * v[7 * cols];
        TensorStats p = analyze(v, {rows, cols});
        CHECK_FALSE(p.lattice.is_ternary);
        CHECK_FALSE(p.lattice.per_channel);
        CHECK(p.lattice.rms_rel > 0);
    }
}

TEST_CASE("rows cut by chunk ends are judged whole: dead rows and per-channel lattices", "[tensor_stats]") {
    // 2.8 M values: three chunks of 2^20 (tensor_scan.hpp), rows 2 and 5 each cut by a chunk end.
    std::mt19937 rng(9);
    std::uniform_int_distribution<int> code(-1, 1);
    const std::int64_t rows = 7, cols = 400003;
    std::vector<double> v(rows * cols);
    double scale_sum = 0;
    int lattice_rows = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
        if (r == 2) continue;  // all zero: dead, and no scale of its own
        double s = 0.01 * (1 + 0.1 * r);
        scale_sum += s;
        ++lattice_rows;
        for (std::int64_t c = 0; c < cols; ++c) v[r * cols + c] = code(rng) * s;
        v[r * cols] = s;
    }
    // Every non-zero value is far above the zero-code threshold: a column is dead when all zero.
    std::int64_t zero_cols = 0;
    for (std::int64_t c = 0; c < cols; ++c) {
        bool all_zero = true;
        for (std::int64_t r = 0; r < rows; ++r) all_zero &= v[r * cols + c] == 0;
        zero_cols += all_zero;
    }
    TensorStats st = analyze(v, {rows, cols});
    CHECK(st.dead.dead_rows == 1);
    CHECK(zero_cols > 0);
    CHECK(st.dead.dead_cols == zero_cols);
    CHECK(st.lattice.per_channel);
    CHECK(st.lattice.scale == scale_sum / lattice_rows);  // summed in row order, as a single walk does
    CHECK(st.lattice.rms_rel == 0);

    SECTION("the two parts of a cut row on different scales are not one lattice") {
        const std::int64_t cut = (1 << 21) - 5 * cols;  // row 5's part in the third chunk starts here
        for (std::int64_t c = cut; c < cols; ++c) v[5 * cols + c] *= 2;
        TensorStats p = analyze(v, {rows, cols});
        CHECK_FALSE(p.lattice.per_channel);
        CHECK_FALSE(p.lattice.is_ternary);
    }
    SECTION("a row alive only in its second part is alive") {
        for (std::int64_t c = 0; c < cols; ++c) v[2 * cols + c] = 0;
        v[2 * cols + cols - 1] = 0.05;  // after the chunk end at 2^20
        TensorStats p = analyze(v, {rows, cols});
        CHECK(p.dead.dead_rows == 0);
    }
}

TEST_CASE("a per-tensor lattice ignores NaN entries", "[tensor_stats]") {
    std::vector<double> v = {0.5, -0.5, 0, 0.5, std::numeric_limits<double>::quiet_NaN(), 0, -0.5, 0.5};
    TensorStats st = analyze(v, {2, 4});
    CHECK(st.lattice.is_ternary);
    CHECK(st.lattice.scale == 0.5);
    CHECK(st.nan_count == 1);
}

TEST_CASE("dead rows and columns under the chosen quantizer", "[tensor_stats]") {
    const std::int64_t rows = 40, cols = 3000;  // 120000 values: several blocks, rows split across them
    auto v = gaussian(rows * cols, 0.02, 77);
    for (std::int64_t c = 0; c < cols; ++c) v[13 * cols + c] = 1e-9;      // dead row
    for (std::int64_t c = 0; c < cols; ++c) v[29 * cols + c] = 0.0;       // dead row
    for (std::int64_t r = 0; r < rows; ++r) v[r * cols + 2345] = -1e-9;  // dead column
    for (std::int64_t r = 0; r < rows; ++r) v[r * cols + 7] = 0.0;        // dead column
    TensorStats st = analyze(v, {rows, cols});
    CHECK(st.dead.rows == rows);
    CHECK(st.dead.cols == cols);
    CHECK(st.dead.dead_rows == 2);
    CHECK(st.dead.dead_cols == 2);

    SECTION("a 3-D tensor is viewed as shape[0] x the rest") {
        TensorStats s3 = analyze(v, {rows, 30, 100});
        CHECK(s3.dead.rows == rows);
        CHECK(s3.dead.cols == cols);
        CHECK(s3.dead.dead_rows == 2);
        CHECK(s3.dead.dead_cols == 2);
    }
}

TEST_CASE("histograms", "[tensor_stats]") {
    std::vector<double> v = {1.0, 0.5, -1.0, 1e-13, 1e5, 0.0, -2.0};
    TensorStats s = analyze(v);
    REQUIRE(s.values.counts.size() == 64);
    CHECK(s.values.lo == -1e5);
    CHECK(s.values.hi == 1e5);
    std::uint64_t total = 0;
    for (auto c : s.values.counts) total += c;
    CHECK(total == 7);
    CHECK(s.values.counts.back() == 1);  // the maximum itself lands in the last bin

    // log10 bins of 1/3 decade from -12: |1| -> bin 36, 0.5 -> bin 35, 2 -> 36,
    // 1e-13 under the range -> bin 0, 1e5 over it -> bin 47; the zero is not counted.
    REQUIRE(s.log_magnitude.counts.size() == 48);
    CHECK(s.log_magnitude.lo == -12);
    CHECK(s.log_magnitude.hi == 4);
    CHECK(s.log_magnitude.counts[36] == 3);
    CHECK(s.log_magnitude.counts[35] == 1);
    CHECK(s.log_magnitude.counts[0] == 1);
    CHECK(s.log_magnitude.counts[47] == 1);
    total = 0;
    for (auto c : s.log_magnitude.counts) total += c;
    CHECK(total == 6);
}

TEST_CASE("log10 bins agree with log10 for a wide spread of magnitudes", "[tensor_stats]") {
    std::mt19937 rng(8);
    std::uniform_real_distribution<double> e(-14, 6);
    std::vector<double> v(20000);
    for (double& x : v) x = std::pow(10.0, e(rng));
    TensorStats s = analyze(v);
    std::vector<std::uint64_t> expect(48, 0);
    for (double x : v) {
        double b = std::floor((std::log10(x) + 12) * 3);
        expect[static_cast<std::size_t>(std::clamp(b, 0.0, 47.0))]++;
    }
    // Edge values may differ by one bin between pow() edges and log10(); none lie that close here.
    CHECK(s.log_magnitude.counts == expect);
}

TEST_CASE("the quantizer option selects the convention used for codes and dead rows", "[tensor_stats]") {
    // All tiny: BitNet's 1e-5 floor makes every code 0; Distillix rescales and keeps them.
    auto v = gaussian(4096, 1e-7, 11);
    TensorStats b = analyze(v, {64, 64});
    CHECK(b.ternary.zero == 1.0);
    CHECK(b.dead.dead_rows == 64);
    AnalysisOptions o;
    o.quantizer = Quantizer::Distillix;
    TensorStats d = analyze(v, {64, 64}, o);
    CHECK(d.ternary.quantizer == Quantizer::Distillix);
    // g = 0.8 sigma + 1e-8 with sigma = 1e-7: |z| < 0.45 sigma -> about 35% zeros.
    CHECK(d.ternary.zero == Approx(0.347).margin(0.025));
    CHECK(d.ternary_other.zero == 1.0);
    CHECK(d.dead.dead_rows == 0);
}

TEST_CASE("integer tensors can be analysed too", "[tensor_stats]") {
    std::vector<std::int32_t> i = {1, -2, 3, 0, 5, 6};
    Owned<std::int32_t> t(i, io::DType::I32, {2, 3});
    TensorStats s = analyze_tensor("ids", t.data);
    CHECK(s.dtype == "int32");
    CHECK(s.mean == 13.0 / 6);
    CHECK(s.min == -2);
    CHECK(s.max == 6);
    CHECK(s.zero_frac == 1.0 / 6);
}

TEST_CASE("invalid histogram options are errors", "[tensor_stats]") {
    AnalysisOptions o;
    o.log_hi = o.log_lo;
    CHECK_THROWS_AS(analyze({1, 2}, {}, o), bitfsck::Error);
}
