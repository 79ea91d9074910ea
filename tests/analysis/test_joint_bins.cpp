// The joint-bin table (large tensors: both histograms by one lookup per value) gives exactly the
// counts of binning every value on its own, on values chosen to sit on and around the edges.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "../../analysis/src/tensor_scan.hpp"
#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/tensor_stats.hpp"

using namespace bitfsck;
using namespace bitfsck::analysis;

namespace {

// The whole figure set, by the one serialiser the reports use: any difference shows.
nlohmann::ordered_json stats(const std::vector<double>& v, std::int64_t min_elements, const AnalysisOptions& o = {}) {
    const auto saved = detail::joint_table_min_elements;
    detail::joint_table_min_elements = min_elements;
    const io::TensorData d(std::as_bytes(std::span(v)), io::DType::F64, {static_cast<std::int64_t>(v.size() / 100), 100});
    auto j = to_json(analyze_tensor("t", d, o));
    detail::joint_table_min_elements = saved;
    return j;
}

void check_same(const std::vector<double>& v, const AnalysisOptions& o = {}) {
    const auto direct = stats(v, std::numeric_limits<std::int64_t>::max(), o);
    const auto table = stats(v, 0, o);
    CHECK(table["values"] == direct["values"]);
    CHECK(table["log_magnitude"] == direct["log_magnitude"]);
    CHECK(table.dump() == direct.dump());
}

double max_abs(const std::vector<double>& v) {
    double m = 0;
    for (double x : v) m = std::max(m, std::fabs(x));
    return m;
}

// Values at, just below and just above every edge of both histograms for this range.
void add_edges(std::vector<double>& v, double maxabs, const AnalysisOptions& o) {
    const double lo = -maxabs, inv = o.value_bins / (2 * maxabs);
    for (int k = 0; k <= o.value_bins; ++k) {
        const double e = lo + k / inv;
        for (double x : {e, std::nextafter(e, -INFINITY), std::nextafter(e, INFINITY)})
            if (std::fabs(x) <= maxabs) v.push_back(x);
    }
    for (int k = 0; k <= o.log_bins; ++k) {
        const double e = std::pow(10.0, o.log_lo + (o.log_hi - o.log_lo) * k / o.log_bins);
        for (double x : {e, std::nextafter(e, 0.0), std::nextafter(e, INFINITY)})
            if (x <= maxabs) v.push_back(x), v.push_back(-x);
    }
}

}  // namespace

TEST_CASE("joint-bin table: the same histograms and figures as binning each value", "[tensor_stats]") {
    const AnalysisOptions o;
    std::mt19937_64 rng(7);
    SECTION("float32 weights with zeros, edges and a tail") {
        std::normal_distribution<double> g(0, 0.02);
        std::vector<double> v;
        for (int i = 0; i < 200000; ++i) v.push_back(i % 9 == 0 ? 0.0 : static_cast<float>(g(rng)));
        v.push_back(-0.0);
        v.push_back(0.31);  // an outlier sets the range
        add_edges(v, max_abs(v), o);
        v.resize(v.size() / 100 * 100);
        check_same(v);
    }
    SECTION("magnitudes from 1e-330 (underflowing to 0) to 1e3, subnormals, values below the table's exponents") {
        std::uniform_real_distribution<double> u(-330, 3);
        std::vector<double> v;
        for (int i = 0; i < 100000; ++i) v.push_back((i & 1 ? -1 : 1) * std::pow(10.0, u(rng)));
        v.push_back(std::numeric_limits<double>::denorm_min());
        v.push_back(-std::numeric_limits<double>::denorm_min());
        v.push_back(std::numeric_limits<double>::min());
        add_edges(v, max_abs(v), o);
        v.resize(v.size() / 100 * 100);
        check_same(v);
    }
    SECTION("a range above 1 (the tiny cell straddles log10 edges) and custom bins") {
        std::cauchy_distribution<double> c(0, 0.5);
        std::vector<double> v;
        for (int i = 0; i < 100000; ++i) v.push_back(c(rng));
        AnalysisOptions custom;
        custom.value_bins = 200;
        custom.log_bins = 160;  // 0.1 decades: not single-step, the binner's loop
        add_edges(v, max_abs(v), custom);
        v.resize(v.size() / 100 * 100);
        check_same(v, custom);
        check_same(v, o);
    }
    SECTION("ternary codes times a scale, and an all-zero tensor") {
        std::vector<double> v;
        for (int i = 0; i < 100000; ++i) v.push_back(0.0123 * static_cast<double>(static_cast<int>(rng() % 3) - 1));
        check_same(v);
        check_same(std::vector<double>(100000, 0.0));
    }
}
