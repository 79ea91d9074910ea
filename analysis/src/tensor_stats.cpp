#include "bitfsck/analysis/tensor_stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include "bitfsck/io/error.hpp"
#include "distinct_set.hpp"
#include "log_binner.hpp"
#include "tensor_kernels.hpp"

namespace bitfsck::analysis {

namespace {

using detail::DistinctSet;
using detail::LogBinner;

// Big enough that per-block overhead vanishes, small enough to stay in L2 across the several
// sweeps pass 2 makes over a block.
constexpr std::int64_t kBlock = 32768;

struct Scratch {
    std::vector<double> raw, finite;
    std::optional<LogBinner> log_binner;
};

// Reused across the tensors one thread analyses, so a checkpoint of many small tensors does
// not pay for fresh buffers and tables each time.
Scratch& scratch() {
    thread_local Scratch s;
    return s;
}

// The largest w >= 0 whose ternary code is 0, so that a code is one comparison instead of a
// division and a rounding per element, yet agrees with ternary_code() bit for bit.
double zero_code_threshold(double scale) {
    if (!std::isfinite(scale)) return std::numeric_limits<double>::infinity();
    double t = 0.5 * scale;
    while (t > 0 && ternary_code(t, scale) != 0) t = std::nextafter(t, 0.0);
    while (ternary_code(std::nextafter(t, INFINITY), scale) == 0) t = std::nextafter(t, INFINITY);
    return t;
}

void validate(const AnalysisOptions& o) {
    if (o.value_bins < 0) throw Error("value histogram: bins must be >= 0");
    if (o.log_bins < 0 || o.log_bins > 65535) throw Error("log10 histogram: bins must be in [0, 65535]");
    if (o.log_bins > 0 && !(o.log_hi > o.log_lo)) throw Error("log10 histogram: empty range");
}

// Walks a block of the row-major matrix view row segment by row segment.
// Dead rows and columns need the position of each value, which the filtered block lacks.
class MatrixWalker {
public:
    MatrixWalker(std::int64_t cols, double zero_threshold, bool track_dead, bool track_rows_lattice)
        : cols_(cols), t_(zero_threshold), dead_(track_dead), lattice_(track_rows_lattice) {
        if (dead_) col_alive_.assign(static_cast<std::size_t>(cols), 0);
    }

    void feed(std::int64_t first, const double* x, std::int64_t n) {
        std::int64_t col = first % cols_;
        std::int64_t i = 0;
        while (i < n) {
            std::int64_t len = std::min(n - i, cols_ - col);
            segment(x + i, col, len);
            i += len;
            col += len;
            if (col == cols_) {
                end_row();
                col = 0;
            }
        }
    }

    std::int64_t dead_rows() const { return dead_rows_; }
    std::int64_t dead_cols() const { return cols_ - alive_cols_; }
    bool rows_on_lattice() const { return lattice_ && lattice_ok_ && lattice_rows_ > 0; }
    double mean_row_scale() const { return lattice_rows_ ? scale_sum_ / static_cast<double>(lattice_rows_) : 0; }

private:
    void segment(const double* x, std::int64_t col, std::int64_t len) {
        if (dead_) {
            if (alive_cols_ < cols_) {
                std::uint8_t* alive = col_alive_.data() + col;
                std::int64_t newly = 0;
                std::uint8_t any = 0;
                for (std::int64_t j = 0; j < len; ++j) {
                    // NaN and Inf never quantize to 0 (torch: round(NaN) != 0).
                    std::uint8_t nz = !(std::fabs(x[j]) <= t_);
                    newly += nz & ~alive[j] & 1;
                    alive[j] |= nz;
                    any |= nz;
                }
                alive_cols_ += newly;
                row_alive_ |= any != 0;
            } else if (!row_alive_) {
                for (std::int64_t j = 0; j < len; ++j) {
                    if (!(std::fabs(x[j]) <= t_)) {
                        row_alive_ = true;
                        break;
                    }
                }
            }
        }
        if (lattice_ && lattice_ok_) {
            std::int64_t j = 0;
            if (row_ref_ == 0) {
                while (j < len && (x[j] == 0 || !std::isfinite(x[j]))) ++j;
                if (j < len) row_ref_ = std::fabs(x[j]);
            }
            bool ok = true;
            for (; j < len; ++j) {
                double a = std::fabs(x[j]);
                ok &= a == row_ref_ || a == 0 || !std::isfinite(a);
            }
            lattice_ok_ = ok;
        }
    }

    void end_row() {
        if (dead_ && !row_alive_) ++dead_rows_;
        row_alive_ = false;
        if (row_ref_ != 0) {
            scale_sum_ += row_ref_;
            ++lattice_rows_;
        }
        row_ref_ = 0;
    }

    std::int64_t cols_;
    double t_;
    bool dead_, lattice_;
    std::vector<std::uint8_t> col_alive_;
    std::int64_t alive_cols_ = 0, dead_rows_ = 0;
    bool row_alive_ = false;
    bool lattice_ok_ = true;
    double row_ref_ = 0, scale_sum_ = 0;
    std::int64_t lattice_rows_ = 0;
};

// Several interleaved copies of the counts, so that runs of values falling in the same bin
// do not serialise on one counter's store-to-load latency.
class Histograms {
public:
    Histograms(int value_bins, double maxabs, int log_bins, const LogBinner* log)
        : vbins_(value_bins), lbins_(log_bins), log_(log), vcounts_(kLanes * std::size_t(value_bins)),
          lcounts_(kLanes * std::size_t(log_bins)) {
        if (maxabs > 0) {
            lo_ = -maxabs;
            inv_ = vbins_ / (2 * maxabs);
        } else {
            // Every finite value is 0: bin it as if the range were [-1, 1], i.e. in the middle.
            lo_ = -1;
            inv_ = vbins_ / 2.0;
        }
    }

    void add(const double* x, std::size_t n) {
        if (lbins_ > 0 && log_->single_step()) add_impl<true>(x, n);
        else add_impl<false>(x, n);
    }

    Histogram values(double maxabs) const { return fold(vcounts_, vbins_, -maxabs, maxabs); }

    Histogram log_magnitude(double lo, double hi, std::uint64_t zeros) const {
        Histogram h = fold(lcounts_, lbins_, lo, hi);
        // Zeros went through the binner with everything else; log10 0 has no bin.
        if (lbins_ > 0) h.counts[log_->bin(0.0)] -= zeros;
        return h;
    }

private:
    static constexpr std::size_t kLanes = 4;

    template <bool kSingleStep>
    int log_bin(double x) const {
        return kSingleStep ? log_->bin_single_step(std::fabs(x)) : log_->bin(std::fabs(x));
    }

    template <bool kSingleStep>
    void add_impl(const double* x, std::size_t n) {
        constexpr std::size_t kChunk = 1024;
        std::int32_t vb[kChunk];
        std::uint64_t *v0 = vcounts_.data(), *v1 = v0 + vbins_, *v2 = v1 + vbins_, *v3 = v2 + vbins_;
        std::uint64_t *l0 = lcounts_.data(), *l1 = l0 + lbins_, *l2 = l1 + lbins_, *l3 = l2 + lbins_;
        for (std::size_t c = 0; c < n; c += kChunk) {
            const std::size_t m = std::min(kChunk, n - c);
            const double* xc = x + c;
            if (vbins_ > 0 && lbins_ > 0) {
                detail::value_bins(xc, m, lo_, inv_, vbins_ - 1, vb);
                std::size_t i = 0;
                for (; i + 4 <= m; i += 4) {
                    ++v0[vb[i]];
                    ++l0[log_bin<kSingleStep>(xc[i])];
                    ++v1[vb[i + 1]];
                    ++l1[log_bin<kSingleStep>(xc[i + 1])];
                    ++v2[vb[i + 2]];
                    ++l2[log_bin<kSingleStep>(xc[i + 2])];
                    ++v3[vb[i + 3]];
                    ++l3[log_bin<kSingleStep>(xc[i + 3])];
                }
                for (; i < m; ++i) {
                    ++v0[vb[i]];
                    ++l0[log_bin<kSingleStep>(xc[i])];
                }
            } else if (vbins_ > 0) {
                detail::value_bins(xc, m, lo_, inv_, vbins_ - 1, vb);
                for (std::size_t i = 0; i < m; ++i) ++v0[vb[i]];
            } else if (lbins_ > 0) {
                for (std::size_t i = 0; i < m; ++i) ++l0[log_bin<kSingleStep>(xc[i])];
            }
        }
    }

    static Histogram fold(const std::vector<std::uint64_t>& c, int bins, double lo, double hi) {
        Histogram h;
        h.lo = lo;
        h.hi = hi;
        h.counts.assign(static_cast<std::size_t>(bins), 0);
        for (std::size_t lane = 0; lane < kLanes; ++lane)
            for (int b = 0; b < bins; ++b) h.counts[b] += c[lane * bins + b];
        return h;
    }

    int vbins_, lbins_;
    const LogBinner* log_;
    double lo_ = 0, inv_ = 0;
    std::vector<std::uint64_t> vcounts_, lcounts_;
};

TernaryFractions fractions(Quantizer q, double scale, std::uint64_t neg, std::uint64_t pos, std::uint64_t n) {
    TernaryFractions f;
    f.quantizer = q;
    f.scale = scale;
    if (n > 0) {
        double dn = static_cast<double>(n);
        f.neg = static_cast<double>(neg) / dn;
        f.pos = static_cast<double>(pos) / dn;
        f.zero = static_cast<double>(n - neg - pos) / dn;
    }
    return f;
}

Quantizer other_quantizer(Quantizer q) { return q == Quantizer::BitNet ? Quantizer::Distillix : Quantizer::BitNet; }

// The values, when they are {-s, 0, +s} (some possibly absent) for one s > 0.
std::optional<double> per_tensor_lattice(const DistinctSet& distinct) {
    if (distinct.capped() || distinct.size() > 3) return std::nullopt;
    double s = 0;
    for (double v : distinct.values()) {
        if (v == 0) continue;
        double a = std::fabs(v);
        if (s != 0 && a != s) return std::nullopt;
        s = a;
    }
    if (s == 0) return std::nullopt;  // all zeros: no scale to speak of
    return s;
}

}  // namespace

TensorStats analyze_tensor(const std::string& name, const io::TensorData& data, const AnalysisOptions& options) {
    validate(options);
    struct ReleaseOnExit {
        const io::TensorData& d;
        ~ReleaseOnExit() { d.release(); }
    } release_on_exit{data};

    TensorStats st;
    st.name = name;
    st.dtype = std::string(io::dtype_name(data.dtype()));
    st.shape = data.shape();
    const std::int64_t n = data.numel();
    st.count = static_cast<std::uint64_t>(n);

    Scratch& sc = scratch();
    const std::int64_t block = std::min<std::int64_t>(std::max<std::int64_t>(n, 1), kBlock);
    if (sc.raw.size() < static_cast<std::size_t>(block)) sc.raw.resize(static_cast<std::size_t>(block));
    double* raw = sc.raw.data();
    auto finite_buffer = [&]() {
        if (sc.finite.size() < static_cast<std::size_t>(block)) sc.finite.resize(static_cast<std::size_t>(block));
        return sc.finite.data();
    };

    // Pass 1: moments, extremes, zeros, distinct values.
    double sum = 0, sumabs = 0, mn = INFINITY, mx = -INFINITY;
    std::uint64_t zeros = 0, finite = 0;
    DistinctSet distinct(options.distinct_cap);
    for (std::int64_t first = 0; first < n; first += block) {
        const std::int64_t cnt = std::min(block, n - first);
        data.read(first, cnt, raw);
        const double* vals = raw;
        std::size_t k = static_cast<std::size_t>(cnt);
        detail::FirstMoments m = detail::first_moments(vals, k);
        if (!std::isfinite(m.sum) || !std::isfinite(m.sumabs)) {
            // Rare: a NaN or Inf (or an F64 sum that overflowed) in this block.
            double* fin = finite_buffer();
            std::uint64_t nan_before = st.nan_count, inf_before = st.inf_count;
            k = detail::keep_finite(raw, k, fin, st.nan_count, st.inf_count);
            vals = fin;
            if (st.nan_count != nan_before || st.inf_count != inf_before) m = detail::first_moments(vals, k);
        }
        sum += m.sum;
        sumabs += m.sumabs;
        mn = std::min(mn, m.min);
        mx = std::max(mx, m.max);
        zeros += m.zeros;
        finite += k;
        if (!distinct.capped()) {
            const auto& known = distinct.values();
            if (known.size() > 4 || !detail::all_among(vals, k, known.data(), known.size())) {
                double last = std::numeric_limits<double>::quiet_NaN();
                for (std::size_t i = 0; i < k && !distinct.capped(); ++i) {
                    if (vals[i] != last) distinct.insert(vals[i]);
                    last = vals[i];
                }
            }
        }
    }

    st.finite_count = finite;
    const bool has_nonfinite = st.nan_count + st.inf_count > 0;
    const double nf = static_cast<double>(finite);
    st.mean = finite ? sum / nf : 0;
    st.absmean = finite ? sumabs / nf : 0;
    st.zero_frac = finite ? static_cast<double>(zeros) / nf : 0;
    st.min = finite ? mn : 0;
    st.max = finite ? mx : 0;
    st.dead.all_zero = n > 0 && zeros == static_cast<std::uint64_t>(n);
    const double maxabs = std::max(std::fabs(st.min), std::fabs(st.max));

    st.lattice.distinct_values = distinct.capped() ? options.distinct_cap : distinct.size();
    st.lattice.distinct_capped = distinct.capped();
    const std::optional<double> tensor_s = per_tensor_lattice(distinct);
    const std::uint64_t nonzero = finite - zeros;
    // The scale a ternary tensor would have: mean |w| over its non-zero values.
    const double fit_s = tensor_s ? *tensor_s : (nonzero ? sumabs / static_cast<double>(nonzero) : 0);

    const Quantizer q0 = options.quantizer, q1 = other_quantizer(q0);
    const double g[2] = {effective_scale(q0, st.absmean), effective_scale(q1, st.absmean)};
    const double t[2] = {zero_code_threshold(g[0]), zero_code_threshold(g[1])};

    // Pass 2: everything that needs the mean, the scales or the range.
    const bool matrix = st.shape.size() >= 2 && n > 0;
    const std::int64_t rows = matrix ? st.shape[0] : 0;
    const std::int64_t cols = matrix ? n / rows : 0;
    std::optional<MatrixWalker> walker;
    if (matrix) walker.emplace(cols, t[0], true, !tensor_s && nonzero > 0);

    const LogBinner* log_binner = nullptr;
    if (options.log_bins > 0) {
        if (!sc.log_binner || !sc.log_binner->same_as(options.log_lo, options.log_hi, options.log_bins))
            sc.log_binner.emplace(options.log_lo, options.log_hi, options.log_bins);
        log_binner = &*sc.log_binner;
    }
    Histograms hist(options.value_bins, maxabs, options.log_bins, log_binner);

    double sq = 0, dev = 0, lattice_sq = 0;
    std::uint64_t neg[2] = {0, 0}, pos[2] = {0, 0};
    for (std::int64_t first = 0; first < n; first += block) {
        const std::int64_t cnt = std::min(block, n - first);
        data.read(first, cnt, raw);
        const double* vals = raw;
        std::size_t k = static_cast<std::size_t>(cnt);
        if (has_nonfinite) {
            double* fin = finite_buffer();
            std::uint64_t ignored_nan = 0, ignored_inf = 0;
            k = detail::keep_finite(raw, k, fin, ignored_nan, ignored_inf);
            vals = fin;
        }
        detail::SecondMoments m = detail::second_moments(vals, k, st.mean, fit_s, t);
        sq += m.sq;
        dev += m.dev;
        lattice_sq += m.lattice_sq;
        for (int j = 0; j < 2; ++j) {
            neg[j] += m.neg[j];
            pos[j] += m.pos[j];
        }
        hist.add(vals, k);
        if (walker) walker->feed(first, raw, cnt);
    }

    // Corrected two-pass variance: the second term removes the rounding error of the mean.
    if (finite >= 2) {
        double ss = sq - dev * dev / nf;
        st.std = std::sqrt(std::max(ss, 0.0) / (nf - 1));
    }
    st.ternary = fractions(q0, g[0], neg[0], pos[0], finite);
    st.ternary_other = fractions(q1, g[1], neg[1], pos[1], finite);
    st.values = hist.values(maxabs);
    st.log_magnitude = hist.log_magnitude(options.log_lo, options.log_hi, zeros);

    if (tensor_s) {
        st.lattice.is_ternary = true;
        st.lattice.scale = *tensor_s;
    } else if (walker && walker->rows_on_lattice()) {
        st.lattice.is_ternary = true;
        st.lattice.per_channel = true;
        st.lattice.scale = walker->mean_row_scale();
    } else {
        st.lattice.scale = fit_s;
    }
    // Per channel every row's non-zero |w| equals its own s, so the distance is exactly 0.
    if (!st.lattice.per_channel && fit_s > 0 && finite > 0) st.lattice.rms_rel = std::sqrt(lattice_sq / nf) / fit_s;

    if (walker) {
        st.dead.rows = rows;
        st.dead.cols = cols;
        st.dead.dead_rows = walker->dead_rows();
        st.dead.dead_cols = walker->dead_cols();
    }
    return st;
}

}  // namespace bitfsck::analysis
