#include "bitfsck/analysis/diff.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

#include "bitfsck/io/parallel.hpp"
#include "bitfsck/io/tensor_names.hpp"
#include "bitfsck/io/text.hpp"

namespace bitfsck::analysis {
namespace {

// Elements per read: large enough to amortise the strided walk, small enough to stay in cache.
constexpr std::int64_t kBlock = 1 << 16;

// mean|W| over finite values of both sides in one pass, as the quantizers compute it (they would
// see NaN, but a NaN scale makes every code meaningless, so the finite values are the useful answer).
std::pair<double, double> absmeans(const io::TensorData& a, const io::TensorData& b, std::vector<double>& ba,
                                   std::vector<double>& bb) {
    double sum_a = 0, sum_b = 0;
    std::uint64_t n_a = 0, n_b = 0;
    for (std::int64_t first = 0; first < a.numel(); first += kBlock) {
        std::int64_t count = std::min(kBlock, a.numel() - first);
        a.read(first, count, ba.data());
        b.read(first, count, bb.data());
        // Pages are let go as they are passed, so a diff's footprint stays a few blocks.
        a.release(first, count);
        b.release(first, count);
        for (std::int64_t i = 0; i < count; ++i) {
            if (std::isfinite(ba[i])) {
                sum_a += std::fabs(ba[i]);
                ++n_a;
            }
            if (std::isfinite(bb[i])) {
                sum_b += std::fabs(bb[i]);
                ++n_b;
            }
        }
    }
    return {n_a ? sum_a / static_cast<double>(n_a) : 0.0, n_b ? sum_b / static_cast<double>(n_b) : 0.0};
}

}  // namespace

TensorDiff diff_tensors(const std::string& name, const io::TensorData& a, const io::TensorData& b, Quantizer q) {
    TensorDiff d;
    d.name = name;
    d.shape = a.shape();
    if (a.shape() != b.shape()) {
        d.shape_b = b.shape();
        d.note = "shape " + shape_text(a.shape()) + " vs " + shape_text(b.shape());
        return d;
    }
    d.compared = true;
    std::vector<double> ba(static_cast<std::size_t>(kBlock)), bb(static_cast<std::size_t>(kBlock));
    std::tie(d.absmean_a, d.absmean_b) = absmeans(a, b, ba, bb);
    d.scale_a = effective_scale(q, d.absmean_a);
    d.scale_b = effective_scale(q, d.absmean_b);

    // Dead rows only mean something for matrices: a row is an output neuron.
    const bool matrix = a.shape().size() >= 2 && a.numel() > 0;
    const std::int64_t cols = matrix ? a.cols() : 1;
    d.rows = matrix ? a.rows() : 0;
    std::vector<std::uint8_t> live_a(static_cast<std::size_t>(d.rows), 0), live_b(static_cast<std::size_t>(d.rows), 0);

    double sa = 0, sb = 0, sd = 0;
    for (std::int64_t first = 0; first < a.numel(); first += kBlock) {
        std::int64_t count = std::min(kBlock, a.numel() - first);
        a.read(first, count, ba.data());
        b.read(first, count, bb.data());
        a.release(first, count);
        b.release(first, count);
        for (std::int64_t i = 0; i < count; ++i) {
            double x = ba[i], y = bb[i];
            if (!std::isfinite(x) || !std::isfinite(y)) {
                ++d.non_finite;
                continue;
            }
            sa += x * x;
            sb += y * y;
            sd += (y - x) * (y - x);
            int ca = ternary_code(x, d.scale_a), cb = ternary_code(y, d.scale_b);
            ++d.transitions[ca + 1][cb + 1];
            if (matrix) {
                auto row = static_cast<std::size_t>((first + i) / cols);
                live_a[row] |= ca != 0;
                live_b[row] |= cb != 0;
            }
        }
    }
    d.count = static_cast<std::uint64_t>(a.numel()) - d.non_finite;
    d.norm_a = std::sqrt(sa);
    d.norm_b = std::sqrt(sb);
    d.norm_diff = std::sqrt(sd);
    // Relative to A; when A is all zero any change is infinitely large, and no change is none.
    d.rel_l2 = d.norm_a > 0 ? d.norm_diff / d.norm_a : (d.norm_diff > 0 ? INFINITY : 0.0);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            if (i != j) d.flips += d.transitions[i][j];
    d.flip_rate = d.count ? static_cast<double>(d.flips) / static_cast<double>(d.count) : 0.0;
    for (std::size_t r = 0; r < live_a.size(); ++r) {
        d.dead_rows_a += !live_a[r];
        d.dead_rows_b += !live_b[r];
        d.new_dead_rows += live_a[r] && !live_b[r];
    }
    a.release();
    b.release();
    return d;
}

CheckpointDiff diff_checkpoints(const io::Checkpoint& a, const io::Checkpoint& b, Quantizer q, unsigned threads,
                                const ProgressCallback& progress, const TensorSelection& selection) {
    CheckpointDiff diff;
    diff.file_a = a.path().string();
    diff.file_b = b.path().string();
    diff.quantizer = q;

    // Matched by state-dict name, else by what the name means under another producer's naming
    // (tensor_names.hpp: `model.layers.0.mlp.up_proj.weight` and GGUF's `blk.0.ffn_up.weight`);
    // A's order first, then what only B has.
    std::vector<const io::TensorEntry*> ta = a.state_dict_tensors(), tb = b.state_dict_tensors();
    if (!selection.is_default()) {
        auto unselected = [&](const io::TensorEntry* t) { return !explicit_selection_matches(selection, t->name); };
        std::erase_if(ta, unselected);
        std::erase_if(tb, unselected);
    }
    auto meaning = [](const std::string& n) { return io::gguf_tensor_name(n).value_or(n); };
    std::map<std::string, const io::TensorEntry*> by_name_b, by_meaning_b;
    std::set<std::string> names_a;
    for (const auto* t : tb) by_name_b.emplace(t->name, t), by_meaning_b.emplace(meaning(t->name), t);
    for (const auto* t : ta) names_a.insert(t->name);

    struct Job {
        const io::TensorEntry* a = nullptr;
        const io::TensorEntry* b = nullptr;
    };
    std::vector<Job> jobs;
    std::set<std::string> seen;
    std::set<const io::TensorEntry*> matched_b;
    for (const auto* t : ta) {
        if (!seen.insert(t->name).second) continue;
        const io::TensorEntry* m = nullptr;
        if (auto it = by_name_b.find(t->name); it != by_name_b.end()) m = it->second;
        else if (auto jt = by_meaning_b.find(meaning(t->name)); jt != by_meaning_b.end() && !names_a.count(jt->second->name))
            m = jt->second;
        if (m && !matched_b.insert(m).second) m = nullptr;
        jobs.push_back({t, m});
    }
    for (const auto* t : tb)
        if (!matched_b.count(t) && seen.insert(t->name).second) jobs.push_back({nullptr, t});

    // Progress counts the bytes of the pairs that are actually read.
    auto readable = [](const Job& j) {
        return j.a && j.b && io::dtype_is_floating(j.a->dtype) && io::dtype_is_floating(j.b->dtype) && j.a->shape == j.b->shape;
    };
    std::uint64_t total = 0;
    for (const auto& j : jobs)
        if (readable(j)) total += j.a->nbytes() + j.b->nbytes();

    diff.tensors.resize(jobs.size());
    ProgressTracker tracker(progress, ProgressUnit::Bytes, total);
    parallel_for(jobs.size(), threads, [&](std::size_t i) {
        tracker.check();
        const Job& job = jobs[i];
        TensorDiff& d = diff.tensors[i];
        if (!job.b) {
            d.name = job.a->name;
            d.shape = job.a->shape;
            d.only_in_a = true;
            return;
        }
        if (!job.a) {
            d.name = job.b->name;
            d.shape = job.b->shape;
            d.only_in_b = true;
            return;
        }
        if (job.a->is_broadcast_view() || job.b->is_broadcast_view()) {
            d.name = job.a->name;
            d.shape = job.a->shape;
            d.note = "a view repeating a much smaller storage (stride 0): not compared";
            return;
        }
        if (!io::dtype_is_floating(job.a->dtype) || !io::dtype_is_floating(job.b->dtype)) {
            d.name = job.a->name;
            d.shape = job.a->shape;
            if (job.a->shape != job.b->shape) d.shape_b = job.b->shape;
            d.note = "not floating point (" + std::string(io::dtype_name(job.a->dtype)) + " / " + std::string(io::dtype_name(job.b->dtype)) + ")";
            return;
        }
        d = diff_tensors(job.a->name, a.data(*job.a), b.data(*job.b), q);
        if (job.b->name != job.a->name) d.note = "B names it " + job.b->name;
        if (d.compared) tracker.advance(job.a->nbytes() + job.b->nbytes(), d.name);
    });

    auto& s = diff.totals;
    double sa = 0, sd = 0;
    for (const auto& d : diff.tensors) {
        if (d.only_in_a) ++s.only_in_a;
        else if (d.only_in_b) ++s.only_in_b;
        else if (!d.compared) ++s.not_compared;
        if (!d.compared) continue;
        ++s.tensors_compared;
        s.count += d.count;
        s.flips += d.flips;
        s.non_finite += d.non_finite;
        s.new_dead_rows += d.new_dead_rows;
        sa += d.norm_a * d.norm_a;
        sd += d.norm_diff * d.norm_diff;
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) s.transitions[i][j] += d.transitions[i][j];
    }
    s.flip_rate = s.count ? static_cast<double>(s.flips) / static_cast<double>(s.count) : 0.0;
    s.rel_l2 = sa > 0 ? std::sqrt(sd / sa) : (sd > 0 ? INFINITY : 0.0);
    return diff;
}

}  // namespace bitfsck::analysis
