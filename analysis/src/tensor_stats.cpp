#include "bitfsck/analysis/tensor_stats.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include "bitfsck/io/error.hpp"
#include "distinct_set.hpp"
#include "log_binner.hpp"
#include "tensor_kernels.hpp"
#include "tensor_scan.hpp"

namespace bitfsck::analysis {

namespace {

using detail::DistinctSet;
using detail::kBlock;
using detail::LogBinner;

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
// What a chunk learns about a row it holds only part of (the first or the last row of the
// chunk); merged with the other parts once every chunk is done.
struct RowPiece {
    std::int64_t row = 0;
    bool alive = false;      // some code of the part is non-zero
    bool lattice_ok = true;  // every non-zero finite |w| of the part equals `ref`
    double ref = 0;          // the part's first non-zero finite |w| (0: none)
};

// Walks one chunk of the row-major matrix view row segment by row segment: dead rows and
// columns need the position of each value, which the filtered block lacks. Rows wholly inside
// the chunk are written to the tensor's per-row arrays (no other chunk touches them); a row cut
// by the chunk's ends becomes a RowPiece.
class ChunkWalker {
public:
    // `finite`: the tensor has no NaN or Inf, so a value codes to non-zero exactly when |w| > t and
    // a row or column is alive exactly when its largest |w| is: vector maxima instead of a flag per value.
    ChunkWalker(std::int64_t cols, double zero_threshold, bool track_cols, bool track_lattice, bool finite, std::uint8_t* row_alive,
                double* row_ref)
        : cols_(cols), t_(zero_threshold), cols_tracked_(track_cols), lattice_(track_lattice), finite_(finite),
          row_alive_out_(row_alive), row_ref_out_(row_ref) {
        if (cols_tracked_) col_alive_.assign(static_cast<std::size_t>(cols), 0);
        if (cols_tracked_ && finite_) col_max_.assign(static_cast<std::size_t>(cols), 0.0);
    }

    void feed(std::int64_t first, const double* x, std::int64_t n) {
        if (!started_) {
            started_ = true;
            row_ = first / cols_;
            col_ = first % cols_;
            whole_row_ = col_ == 0;
        }
        std::int64_t i = 0;
        while (i < n) {
            std::int64_t len = std::min(n - i, cols_ - col_);
            segment(x + i, col_, len);
            i += len;
            col_ += len;
            if (col_ == cols_) {
                end_row(true);
                col_ = 0;
                ++row_;
                whole_row_ = true;
            }
        }
    }

    // The row the chunk ends inside of, if any, becomes a piece.
    void finish() {
        if (started_ && col_ != 0) end_row(false);
        for (std::size_t j = 0; j < col_max_.size(); ++j) col_alive_[j] |= col_max_[j] > t_;
    }

    bool cols_tracked() const { return cols_tracked_; }
    const std::vector<std::uint8_t>& col_alive() const { return col_alive_; }
    bool lattice_ok() const { return lattice_ok_; }
    const std::vector<RowPiece>& pieces() const { return pieces_; }

private:
    void segment(const double* x, std::int64_t col, std::int64_t len) {
        if (finite_ && cols_tracked_ && alive_cols_ < cols_) {
            row_alive_ |= detail::max_abs_update(x, static_cast<std::size_t>(len), col_max_.data() + col) > t_;
        } else if (finite_) {
            if (!row_alive_) row_alive_ = detail::max_abs(x, static_cast<std::size_t>(len)) > t_;
        } else if (cols_tracked_ && alive_cols_ < cols_) {
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

    void end_row(bool row_complete) {
        // Every 16 rows: once every column is alive, the maxima stop (the flag-per-value walk counts as it goes).
        if (finite_ && cols_tracked_ && alive_cols_ < cols_ && ++rows_since_count_ == 16) {
            rows_since_count_ = 0;
            alive_cols_ = std::count_if(col_max_.begin(), col_max_.end(), [&](double m) { return m > t_; });
        }
        if (whole_row_ && row_complete) {
            row_alive_out_[row_] = row_alive_;
            if (lattice_) row_ref_out_[row_] = row_ref_;
        } else {
            pieces_.push_back(RowPiece{row_, row_alive_, lattice_ok_, row_ref_});
        }
        row_alive_ = false;
        row_ref_ = 0;
    }

    std::int64_t cols_;
    double t_;
    bool cols_tracked_, lattice_, finite_;
    std::vector<double> col_max_;  // finite tensors: each column's largest |w| so far
    int rows_since_count_ = 0;
    std::uint8_t* row_alive_out_;
    double* row_ref_out_;
    std::vector<std::uint8_t> col_alive_;
    std::int64_t alive_cols_ = 0;
    bool started_ = false, whole_row_ = false;
    std::int64_t row_ = 0, col_ = 0;
    bool row_alive_ = false;
    bool lattice_ok_ = true;
    double row_ref_ = 0;
    std::vector<RowPiece> pieces_;
};

// The value histogram's lo and 1/width (value_bin's parameters) for a tensor whose largest |w|
// is maxabs: [-maxabs, maxabs] in `bins` bins.
struct ValueRange {
    double lo, inv;
};
ValueRange value_range(double maxabs, int bins) {
    if (maxabs > 0) return {-maxabs, bins / (2 * maxabs)};
    return {-1, bins / 2.0};  // every finite value is 0: bin it as if the range were [-1, 1], i.e. in the middle
}

}  // namespace

namespace detail {

// The (value bin, log10 bin) pair, as one index bin_v * log_bins + bin_l, of every cell of finite
// values (cell_keys) whose values all share both bins; kAmbiguous for the few cells an edge of
// either histogram falls inside, whose values are binned one by one. Both bin functions are
// monotone in the value (a subtraction, a product by a positive constant and a clamp; a count of
// edges below), so a cell whose extreme values share both bins is uniform, and every count equals
// that of binning each value on its own. Built once per tensor after the first pass (it depends
// on the value range), by halving runs of cells: only cells near an edge are looked at one by one.
class JointBinTable {
public:
    static constexpr std::uint16_t kAmbiguous = 0xffff;

    JointBinTable(double maxabs, int value_bins, const LogBinner& log)
        : top_(static_cast<int>(std::bit_cast<std::uint64_t>(maxabs) >> 52)), lo_(value_range(maxabs, value_bins).lo),
          inv_(value_range(maxabs, value_bins).inv), last_(value_bins - 1),
          log_bins_(log.bins()), log_(log), joint_(static_cast<std::size_t>(kCellKeys), kAmbiguous) {
        joint_[0] = joint_of(0.0, 0.0);
        for (int sign = 0; sign < 2; ++sign) fill(sign, 0, kCellsPerSign - 1);
    }

    int top() const { return top_; }
    std::uint16_t operator[](std::int32_t key) const { return joint_[static_cast<std::size_t>(key)]; }
    int joint(double v) const { return value_bin(v, lo_, inv_, last_) * log_bins_ + log_.bin(std::fabs(v)); }

    // Whether the table applies: a finite positive range and pairs that fit 16 bits.
    static bool usable(double maxabs, int value_bins, int log_bins) {
        return maxabs > 0 && std::isfinite(maxabs) && value_bins > 0 && log_bins > 0 &&
               static_cast<std::int64_t>(value_bins) * log_bins < kAmbiguous;
    }

private:
    // The magnitudes, as bit patterns, of cell c (0: the tiny cell) of one sign; false when empty.
    bool cell_range(int c, std::uint64_t& low, std::uint64_t& high) const {
        const std::int64_t first = top_ - kCellExponents + 1;
        constexpr int shift = 52 - kCellMantissaBits;
        if (c == 0) {
            if (first <= 0) return false;  // no exponent below the first: the cells cover every magnitude
            low = 1;                       // the smallest subnormal (zero has its own key)
            high = (static_cast<std::uint64_t>(first) << 52) - 1;
            return true;
        }
        const std::int64_t rel = (c - 1) >> kCellMantissaBits, mant = (c - 1) & ((1 << kCellMantissaBits) - 1);
        if (first + rel < 0) return false;
        low = (static_cast<std::uint64_t>(first + rel) << 52) | (static_cast<std::uint64_t>(mant) << shift);
        high = low + (std::uint64_t{1} << shift) - 1;
        if (low == 0) low = 1;  // the cell holding zero's bit pattern: zero has its own key
        return true;
    }

    std::uint16_t joint_of(double a, double b) const {
        const int ja = joint(a), jb = joint(b);
        return ja == jb ? static_cast<std::uint16_t>(ja) : kAmbiguous;
    }

    double value(int sign, std::uint64_t magnitude) const {
        const double m = std::bit_cast<double>(magnitude);
        return sign ? -m : m;
    }

    // Cells [a, b] of one sign: one pair for all when the run's extremes share it, else halves.
    void fill(int sign, int a, int b) {
        std::uint64_t low_a = 0, high_a = 0, low_b = 0, high_b = 0;
        while (a <= b && !cell_range(a, low_a, high_a)) ++a;  // empty cells (subnormal exponents) stay unused
        if (a > b || !cell_range(b, low_b, high_b)) return;
        const std::uint16_t j = joint_of(value(sign, low_a), value(sign, high_b));
        const std::size_t base = 1 + static_cast<std::size_t>(sign) * kCellsPerSign;
        if (j != kAmbiguous) {
            std::fill(joint_.begin() + static_cast<std::ptrdiff_t>(base + a), joint_.begin() + static_cast<std::ptrdiff_t>(base + b + 1), j);
            return;
        }
        if (a == b) return;  // an edge inside this cell: kAmbiguous
        const int mid = a + (b - a) / 2;
        fill(sign, a, mid);
        fill(sign, mid + 1, b);
    }

    int top_;
    double lo_, inv_;
    std::int32_t last_;
    int log_bins_;
    const LogBinner log_;  // a copy: the scan's binners are per thread
    std::vector<std::uint16_t> joint_;
};

}  // namespace detail

namespace {

// Several interleaved copies of the counts, so that runs of values falling in the same bin
// do not serialise on one counter's store-to-load latency.
class Histograms {
public:
    Histograms(int value_bins, double maxabs, int log_bins, const LogBinner* log, const detail::JointBinTable* joint = nullptr)
        : vbins_(value_bins), lbins_(log_bins), log_(log), joint_table_(joint), vcounts_(kLanes * std::size_t(value_bins)),
          lcounts_(kLanes * std::size_t(log_bins)) {
        if (joint_table_) jcounts_.assign(kJointLanes * std::size_t(value_bins) * std::size_t(log_bins), 0);
        const ValueRange r = value_range(maxabs, vbins_);
        lo_ = r.lo;
        inv_ = r.inv;
    }

    void add(const double* x, std::size_t n) {
        if (joint_table_) add_joint(x, n);
        else if (lbins_ > 0 && log_->single_step()) add_impl<true>(x, n);
        else add_impl<false>(x, n);
    }

    // Adds the counts (every lane) to a tensor's totals of value_bins and log_bins entries.
    void add_to(std::vector<std::uint64_t>& values, std::vector<std::uint64_t>& logs) const {
        for (std::size_t lane = 0; lane < kLanes; ++lane) {
            for (int b = 0; b < vbins_; ++b) values[b] += vcounts_[lane * vbins_ + b];
            for (int b = 0; b < lbins_; ++b) logs[b] += lcounts_[lane * lbins_ + b];
        }
        const std::size_t pairs = std::size_t(vbins_) * std::size_t(lbins_);
        for (std::size_t k = 0; k < jcounts_.size(); ++k) {
            const std::size_t j = k % pairs;
            values[j / lbins_] += jcounts_[k];
            logs[j % lbins_] += jcounts_[k];
        }
    }

private:
    static constexpr std::size_t kLanes = 4;
    static constexpr std::size_t kJointLanes = 2;

    // One table lookup and one increment per value, for both histograms: the log10 bin's own table
    // walk and the second increment cost more than the rest of the second pass.
    void add_joint(const double* x, std::size_t n) {
        constexpr std::size_t kChunk = 1024;
        std::int32_t keys[kChunk];
        const detail::JointBinTable& table = *joint_table_;
        std::uint32_t *j0 = jcounts_.data(), *j1 = j0 + std::size_t(vbins_) * std::size_t(lbins_);
        auto count = [&](std::uint32_t* lane, std::int32_t key, double v) {
            const std::uint16_t j = table[key];
            ++lane[j != detail::JointBinTable::kAmbiguous ? j : table.joint(v)];
        };
        for (std::size_t c = 0; c < n; c += kChunk) {
            const std::size_t m = std::min(kChunk, n - c);
            const double* xc = x + c;
            detail::cell_keys(xc, m, table.top(), keys);
            std::size_t i = 0;
            for (; i + 2 <= m; i += 2) {
                count(j0, keys[i], xc[i]);
                count(j1, keys[i + 1], xc[i + 1]);
            }
            for (; i < m; ++i) count(j0, keys[i], xc[i]);
        }
    }

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

    int vbins_, lbins_;
    const LogBinner* log_;
    const detail::JointBinTable* joint_table_;
    double lo_ = 0, inv_ = 0;
    std::vector<std::uint64_t> vcounts_, lcounts_;
    std::vector<std::uint32_t> jcounts_;  // one pass-2 chunk's counts (at most detail::kChunk = 2^20 values): 32 bits suffice
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

namespace detail {

struct TensorScan::State {
    std::mutex mutex;  // guards the merges at the end of each chunk
    std::int64_t n = 0, block = 1, blocks = 0;

    // Pass 1.
    std::vector<double> p1;  // per block: sum, sumabs
    double mn = INFINITY, mx = -INFINITY;
    std::uint64_t zeros = 0, finite = 0, nan = 0, inf = 0;
    DistinctSet distinct;
    std::atomic<bool> distinct_capped{false};

    // Known after pass 1.
    TensorStats st;
    bool has_nonfinite = false;
    double sumabs = 0, fit_s = 0, maxabs = 0;
    std::optional<double> tensor_s;
    double g[2] = {0, 0}, t[2] = {0, 0};
    Quantizer q0 = Quantizer::BitNet, q1 = Quantizer::Distillix;
    bool matrix = false, track_lattice = false;
    std::int64_t rows = 0, cols = 0;

    // Pass 2.
    std::optional<JointBinTable> joint_table;  // large tensors: both histograms by one lookup per value
    std::vector<double> p2;  // per block: sq, dev, lattice_sq
    std::uint64_t neg[2] = {0, 0}, pos[2] = {0, 0};
    std::vector<std::uint64_t> vcounts, lcounts;
    std::vector<std::uint8_t> row_alive, col_alive;
    std::vector<double> row_ref;
    std::atomic<std::int64_t> alive_cols{0};
    bool lattice_ok = true;
    std::vector<RowPiece> pieces;

    explicit State(std::uint64_t cap) : distinct(cap) {}
};

namespace {

const LogBinner* log_binner(const AnalysisOptions& o) {
    if (o.log_bins <= 0) return nullptr;
    Scratch& sc = scratch();
    if (!sc.log_binner || !sc.log_binner->same_as(o.log_lo, o.log_hi, o.log_bins)) sc.log_binner.emplace(o.log_lo, o.log_hi, o.log_bins);
    return &*sc.log_binner;
}

double* raw_buffer(std::int64_t block) {
    Scratch& sc = scratch();
    if (sc.raw.size() < static_cast<std::size_t>(block)) sc.raw.resize(static_cast<std::size_t>(block));
    return sc.raw.data();
}

double* finite_buffer(std::int64_t block) {
    Scratch& sc = scratch();
    if (sc.finite.size() < static_cast<std::size_t>(block)) sc.finite.resize(static_cast<std::size_t>(block));
    return sc.finite.data();
}

}  // namespace

TensorScan::TensorScan(std::string name, io::TensorData data, const AnalysisOptions& options)
    : name_(std::move(name)), data_(std::move(data)), options_(options) {
    validate(options_);
    s_ = std::make_unique<State>(options_.distinct_cap);
    s_->n = data_.numel();
    s_->block = std::min<std::int64_t>(std::max<std::int64_t>(s_->n, 1), kBlock);
    s_->blocks = (s_->n + s_->block - 1) / s_->block;
    s_->p1.assign(2 * static_cast<std::size_t>(s_->blocks), 0.0);
    chunks_ = std::max<std::size_t>(1, static_cast<std::size_t>((s_->n + kChunk - 1) / kChunk));
}

TensorScan::~TensorScan() { data_.release(); }

// The chunk's pages, and the previous chunk's too: a fault maps the file around the address it
// touched (fault-around, large page-cache folios), so reading a chunk maps some pages of its
// neighbours back in after their own release; with two threads on neighbouring chunks that
// adds up to a fifth of a large tensor. Releasing a page another thread still reads only makes
// it fault again.
void TensorScan::release_behind(std::int64_t first, std::int64_t end) const {
    const std::int64_t from = std::max<std::int64_t>(0, first - kChunk);
    data_.release(from, end - from);
}

std::int64_t TensorScan::chunk_count(std::size_t c) const {
    return std::max<std::int64_t>(0, std::min(kChunk, data_.numel() - chunk_first(c)));
}

void TensorScan::pass1(std::size_t c, const std::function<void(std::int64_t, std::int64_t)>& before_block) {
    State& s = *s_;
    const std::int64_t first = chunk_first(c), end = first + chunk_count(c);
    double* raw = raw_buffer(s.block);
    double mn = INFINITY, mx = -INFINITY;
    std::uint64_t zeros = 0, finite = 0, nan = 0, inf = 0;
    DistinctSet distinct(options_.distinct_cap);
    for (std::int64_t b = first; b < end; b += s.block) {
        const std::int64_t cnt = std::min(s.block, end - b);
        if (before_block) before_block(b, cnt);
        data_.read(b, cnt, raw);
        const double* vals = raw;
        std::size_t k = static_cast<std::size_t>(cnt);
        FirstMoments m = first_moments(vals, k);
        if (!std::isfinite(m.sum) || !std::isfinite(m.sumabs)) {
            // Rare: a NaN or Inf (or an F64 sum that overflowed) in this block.
            double* fin = finite_buffer(s.block);
            std::uint64_t nan_before = nan, inf_before = inf;
            k = keep_finite(raw, k, fin, nan, inf);
            vals = fin;
            if (nan != nan_before || inf != inf_before) m = first_moments(vals, k);
        }
        const auto bi = static_cast<std::size_t>(b / s.block);
        s.p1[2 * bi] = m.sum;
        s.p1[2 * bi + 1] = m.sumabs;
        mn = std::min(mn, m.min);
        mx = std::max(mx, m.max);
        zeros += m.zeros;
        finite += k;
        if (!distinct.capped() && !s.distinct_capped.load(std::memory_order_relaxed)) {
            const auto& known = distinct.values();
            if (known.size() > 4 || !all_among(vals, k, known.data(), known.size())) {
                double last = std::numeric_limits<double>::quiet_NaN();
                for (std::size_t i = 0; i < k && !distinct.capped(); ++i) {
                    if (vals[i] != last) distinct.insert(vals[i]);
                    last = vals[i];
                }
            }
        }
    }
    release_behind(first, end);

    std::lock_guard lock(s.mutex);
    s.mn = std::min(s.mn, mn);
    s.mx = std::max(s.mx, mx);
    s.zeros += zeros;
    s.finite += finite;
    s.nan += nan;
    s.inf += inf;
    // Capped here means more distinct values than the cap in this chunk alone, so in the tensor.
    if (distinct.capped()) s.distinct.mark_capped();
    for (std::size_t i = 0; i < distinct.values().size() && !s.distinct.capped(); ++i) s.distinct.insert(distinct.values()[i]);
    if (s.distinct.capped()) s.distinct_capped = true;
}

void TensorScan::finish1() {
    State& s = *s_;
    TensorStats& st = s.st;
    st.name = name_;
    st.dtype = std::string(io::dtype_name(data_.dtype()));
    st.shape = data_.shape();
    const std::int64_t n = s.n;
    st.count = static_cast<std::uint64_t>(n);
    st.nan_count = s.nan;
    st.inf_count = s.inf;

    // Folded in block order: the very additions a sequential walk makes.
    double sum = 0, sumabs = 0;
    for (std::int64_t b = 0; b < s.blocks; ++b) {
        sum += s.p1[2 * b];
        sumabs += s.p1[2 * b + 1];
    }
    std::vector<double>().swap(s.p1);
    const std::uint64_t finite = s.finite, zeros = s.zeros;
    st.finite_count = finite;
    s.has_nonfinite = st.nan_count + st.inf_count > 0;
    const double nf = static_cast<double>(finite);
    st.mean = finite ? sum / nf : 0;
    st.absmean = finite ? sumabs / nf : 0;
    st.zero_frac = finite ? static_cast<double>(zeros) / nf : 0;
    st.min = finite ? s.mn : 0;
    st.max = finite ? s.mx : 0;
    st.dead.all_zero = n > 0 && zeros == static_cast<std::uint64_t>(n);
    s.maxabs = std::max(std::fabs(st.min), std::fabs(st.max));
    s.sumabs = sumabs;

    st.lattice.distinct_values = s.distinct.capped() ? options_.distinct_cap : s.distinct.size();
    st.lattice.distinct_capped = s.distinct.capped();
    s.tensor_s = per_tensor_lattice(s.distinct);
    s.distinct = DistinctSet(options_.distinct_cap);
    const std::uint64_t nonzero = finite - zeros;
    // The scale a ternary tensor would have: mean |w| over its non-zero values.
    s.fit_s = s.tensor_s ? *s.tensor_s : (nonzero ? sumabs / static_cast<double>(nonzero) : 0);

    s.q0 = options_.quantizer;
    s.q1 = other_quantizer(s.q0);
    s.g[0] = effective_scale(s.q0, st.absmean);
    s.g[1] = effective_scale(s.q1, st.absmean);
    s.t[0] = zero_code_threshold(s.g[0]);
    s.t[1] = zero_code_threshold(s.g[1]);

    s.matrix = st.shape.size() >= 2 && n > 0;
    s.rows = s.matrix ? st.shape[0] : 0;
    s.cols = s.matrix ? n / s.rows : 0;
    s.track_lattice = s.matrix && !s.tensor_s && nonzero > 0;
    if (s.matrix) {
        s.row_alive.assign(static_cast<std::size_t>(s.rows), 0);
        s.col_alive.assign(static_cast<std::size_t>(s.cols), 0);
        if (s.track_lattice) s.row_ref.assign(static_cast<std::size_t>(s.rows), 0.0);
    }
    if (n >= joint_table_min_elements && JointBinTable::usable(s.maxabs, options_.value_bins, options_.log_bins)) {
        s.joint_table.emplace(s.maxabs, options_.value_bins, *log_binner(options_));
    }
    s.p2.assign(3 * static_cast<std::size_t>(s.blocks), 0.0);
    s.vcounts.assign(static_cast<std::size_t>(options_.value_bins), 0);
    s.lcounts.assign(static_cast<std::size_t>(options_.log_bins), 0);
}

void TensorScan::pass2(std::size_t c) {
    State& s = *s_;
    const std::int64_t first = chunk_first(c), end = first + chunk_count(c);
    double* raw = raw_buffer(s.block);
    std::optional<ChunkWalker> walker;
    if (s.matrix)
        walker.emplace(s.cols, s.t[0], s.alive_cols.load(std::memory_order_relaxed) < s.cols, s.track_lattice, !s.has_nonfinite,
                       s.row_alive.data(),
                       s.track_lattice ? s.row_ref.data() : nullptr);
    Histograms hist(options_.value_bins, s.maxabs, options_.log_bins, log_binner(options_), s.joint_table ? &*s.joint_table : nullptr);
    std::uint64_t neg[2] = {0, 0}, pos[2] = {0, 0};
    for (std::int64_t b = first; b < end; b += s.block) {
        const std::int64_t cnt = std::min(s.block, end - b);
        data_.read(b, cnt, raw);
        const double* vals = raw;
        std::size_t k = static_cast<std::size_t>(cnt);
        if (s.has_nonfinite) {
            double* fin = finite_buffer(s.block);
            std::uint64_t ignored_nan = 0, ignored_inf = 0;
            k = keep_finite(raw, k, fin, ignored_nan, ignored_inf);
            vals = fin;
        }
        SecondMoments m = second_moments(vals, k, s.st.mean, s.fit_s, s.t);
        const auto bi = static_cast<std::size_t>(b / s.block);
        s.p2[3 * bi] = m.sq;
        s.p2[3 * bi + 1] = m.dev;
        s.p2[3 * bi + 2] = m.lattice_sq;
        for (int j = 0; j < 2; ++j) {
            neg[j] += m.neg[j];
            pos[j] += m.pos[j];
        }
        hist.add(vals, k);
        if (walker) walker->feed(b, raw, cnt);
    }
    if (walker) walker->finish();
    release_behind(first, end);

    std::lock_guard lock(s.mutex);
    for (int j = 0; j < 2; ++j) {
        s.neg[j] += neg[j];
        s.pos[j] += pos[j];
    }
    hist.add_to(s.vcounts, s.lcounts);
    if (walker) {
        if (walker->cols_tracked()) {
            std::int64_t alive = 0;
            const auto& mine = walker->col_alive();
            for (std::size_t j = 0; j < mine.size(); ++j) alive += (s.col_alive[j] |= mine[j]) != 0;
            s.alive_cols = alive;
        }
        s.lattice_ok &= walker->lattice_ok();
        s.pieces.insert(s.pieces.end(), walker->pieces().begin(), walker->pieces().end());
    }
}

TensorStats TensorScan::finish2() {
    State& s = *s_;
    TensorStats st = std::move(s.st);
    const double nf = static_cast<double>(st.finite_count);
    double sq = 0, dev = 0, lattice_sq = 0;
    for (std::int64_t b = 0; b < s.blocks; ++b) {
        sq += s.p2[3 * b];
        dev += s.p2[3 * b + 1];
        lattice_sq += s.p2[3 * b + 2];
    }
    // Corrected two-pass variance: the second term removes the rounding error of the mean.
    if (st.finite_count >= 2) {
        double ss = sq - dev * dev / nf;
        st.std = std::sqrt(std::max(ss, 0.0) / (nf - 1));
    }
    st.ternary = fractions(s.q0, s.g[0], s.neg[0], s.pos[0], st.finite_count);
    st.ternary_other = fractions(s.q1, s.g[1], s.neg[1], s.pos[1], st.finite_count);
    st.values.lo = -s.maxabs;
    st.values.hi = s.maxabs;
    st.values.counts = std::move(s.vcounts);
    st.log_magnitude.lo = options_.log_lo;
    st.log_magnitude.hi = options_.log_hi;
    st.log_magnitude.counts = std::move(s.lcounts);
    // Zeros went through the binner with everything else; log10 0 has no bin.
    if (options_.log_bins > 0) st.log_magnitude.counts[log_binner(options_)->bin(0.0)] -= s.zeros;

    // Rows cut by chunk ends: every part's flags together.
    bool lattice_ok = s.lattice_ok;
    for (const RowPiece& p : s.pieces) {
        const auto r = static_cast<std::size_t>(p.row);
        s.row_alive[r] |= p.alive;
        if (!s.track_lattice) continue;
        lattice_ok &= p.lattice_ok;
        if (p.ref != 0) {
            if (s.row_ref[r] == 0) s.row_ref[r] = p.ref;
            else lattice_ok &= s.row_ref[r] == p.ref;
        }
    }
    bool rows_on_lattice = false;
    double mean_row_scale = 0;
    if (s.track_lattice && lattice_ok) {
        double scale_sum = 0;
        std::int64_t lattice_rows = 0;
        for (double ref : s.row_ref) {
            if (ref == 0) continue;
            scale_sum += ref;
            ++lattice_rows;
        }
        rows_on_lattice = lattice_rows > 0;
        if (lattice_rows) mean_row_scale = scale_sum / static_cast<double>(lattice_rows);
    }

    if (s.tensor_s) {
        st.lattice.is_ternary = true;
        st.lattice.scale = *s.tensor_s;
    } else if (rows_on_lattice) {
        st.lattice.is_ternary = true;
        st.lattice.per_channel = true;
        st.lattice.scale = mean_row_scale;
    } else {
        st.lattice.scale = s.fit_s;
    }
    // Per channel every row's non-zero |w| equals its own s, so the distance is exactly 0.
    if (!st.lattice.per_channel && s.fit_s > 0 && st.finite_count > 0) st.lattice.rms_rel = std::sqrt(lattice_sq / nf) / s.fit_s;

    if (s.matrix) {
        st.dead.rows = s.rows;
        st.dead.cols = s.cols;
        st.dead.dead_rows = std::count(s.row_alive.begin(), s.row_alive.end(), std::uint8_t{0});
        st.dead.dead_cols = std::count(s.col_alive.begin(), s.col_alive.end(), std::uint8_t{0});
    }
    s_ = std::make_unique<State>(0);  // the per-block sums and per-row flags go now
    return st;
}

}  // namespace detail

TensorStats analyze_tensor(const std::string& name, const io::TensorData& data, const AnalysisOptions& options) {
    detail::TensorScan scan(name, data, options);
    for (std::size_t c = 0; c < scan.chunks(); ++c) scan.pass1(c);
    scan.finish1();
    for (std::size_t c = 0; c < scan.chunks(); ++c) scan.pass2(c);
    return scan.finish2();
}

}  // namespace bitfsck::analysis
