// Recognises packed ternary tensors in a torch or safetensors state dict and folds each group of
// stored tensors into one logical entry with its encoding:
//   i2s (Distillix): <p>.weight uint8 + <p>_shape (int tensor) + <p>_scale (scalar), or the
//                    shapes in a JSON uint8 tensor named __metadata__ (safetensors variant);
//   Hugging Face:    <p>.weight uint8 [R, in] + <p>.weight_scale, logical shape [4R, in].
// The helper tensors leave the state dict and are listed in the logical entry's packed.parts.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "bitfsck/io/error.hpp"
#include "bitfsck/io/packed.hpp"
#include "bitfsck/io/text.hpp"
#include "checkpoint_builder.hpp"

namespace bitfsck::io {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A helper tensor's values; `max_values` bounds what a small file may claim (a stride-0 view of one
// element can have any number of them).
std::vector<double> read_all(const MappedFile& file, const TensorEntry& e, std::int64_t max_values) {
    TensorData d(file, e);
    if (d.numel() > max_values)
        throw FormatError(file.display_name(), "tensor '" + e.name + "' has " + std::to_string(d.numel()) +
                                                   " values, more than the " + std::to_string(max_values) + " it can need here");
    std::vector<double> v(static_cast<std::size_t>(d.numel()));
    d.read(0, d.numel(), v.data());
    return v;
}

// Shapes from the __metadata__ tensor: {"name": [dims]} or {"name": {"shape": [dims]}}, possibly
// under a top-level "shapes" key. Names are weight names or their prefixes.
std::unordered_map<std::string, std::vector<std::int64_t>> parse_shape_table(const MappedFile& file, const TensorEntry& e) {
    std::unordered_map<std::string, std::vector<std::int64_t>> out;
    if (e.dtype != DType::U8 || !e.is_contiguous()) return out;
    auto bytes = file.bytes(e.storage_file_offset + static_cast<std::uint64_t>(e.storage_offset), static_cast<std::uint64_t>(e.numel()),
                            "__metadata__ tensor");
    nlohmann::json j = nlohmann::json::parse(reinterpret_cast<const char*>(bytes.data()),
                                             reinterpret_cast<const char*>(bytes.data()) + bytes.size(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return out;
    if (j.contains("shapes") && j["shapes"].is_object()) j = j["shapes"];
    for (auto it = j.begin(); it != j.end(); ++it) {
        const nlohmann::json* dims = &it.value();
        if (dims->is_object() && dims->contains("shape")) dims = &(*dims)["shape"];
        if (!dims->is_array()) continue;
        std::vector<std::int64_t> shape;
        bool ok = true;
        for (const auto& d : *dims) {
            if (!d.is_number_integer() || d.get<std::int64_t>() < 0) ok = false;
            else shape.push_back(d.get<std::int64_t>());
        }
        if (ok) out[it.key()] = std::move(shape);
    }
    return out;
}

struct HfCandidate {
    std::size_t weight, scale;
    std::vector<float> scales;
    double magnitude;  // median |stored scale|
};

// How Hugging Face weight_scale turns codes into values. config.json's quantization_config
// decides when there is one (BitLinear divides, AutoBitLinear offline multiplies); the scales'
// magnitude is the fallback and a cross-check: trained ternary weights have an absmean far below
// 1, so a stored scale far above 1 is its reciprocal. Without a config, decided per checkpoint
// when all tensors agree.
void settle_hf_scale_convention(CheckpointBuilder& b, const std::vector<HfCandidate>& hf,
                                std::vector<std::pair<std::size_t, TensorEntry>>& replace) {
    std::size_t above = 0, below = 0;
    double lo = INFINITY, hi = 0, closest = INFINITY;
    for (const auto& c : hf) {
        if (c.magnitude == 0) continue;
        (c.magnitude > 1 ? above : below)++;
        lo = std::min(lo, c.magnitude), hi = std::max(hi, c.magnitude);
        closest = std::min(closest, std::fabs(std::log10(c.magnitude)));
    }
    const bool mixed = above && below;
    const bool magnitude_says_reciprocal = above > below;
    const std::string confidence = mixed || !(above || below) ? "low" : closest >= 1.0 ? "high" : closest >= 0.3 ? "medium" : "low";
    const std::string range = (above || below) ? "stored scales from " + fmt("%.4g", lo) + " to " + fmt("%.4g", hi) : "";

    const BitNetQuantization* q = b.config && b.config->bitnet && !b.config->bitnet->online() ? &*b.config->bitnet : nullptr;
    std::string note = "Hugging Face packed ternary weights: " + std::to_string(hf.size()) + " tensor(s); ";
    if (q) {
        note += q->describe() + ", from " + b.config->path.string();
        if (!range.empty()) note += "; " + range;
        if (!mixed && (above || below) && magnitude_says_reciprocal != q->scale_divides()) {
            const std::string other = magnitude_says_reciprocal ? "1/absmean" : "absmean";
            if (confidence == "high")
                b.warnings.push_back(b.config->path.string() + " says weight_scale " + (q->scale_divides() ? "divides" : "multiplies") +
                                     ", but the " + range + " look like " + other +
                                     " (confidence high): check that config.json belongs to these weights");
            else
                note += "; their magnitude alone would have suggested " + other + " (confidence " + confidence + "): config.json decides";
        }
    } else {
        if (b.config && b.config->bitnet && b.config->bitnet->online())
            b.warnings.push_back(b.config->path.string() + " says quantization_mode online (latent weights), but " +
                                 std::to_string(hf.size()) + " weight(s) are stored packed: the scale convention is guessed from magnitude");
        if (mixed)
            note += "weight_scale conventions disagree (" + std::to_string(above) + " above 1, " + std::to_string(below) +
                    " below 1): each tensor read by its own magnitude";
        else if (above)
            note += "weight_scale holds 1/absmean (values = code / weight_scale)";
        else if (below)
            note += "weight_scale holds absmean (values = code × weight_scale)";
        else
            note += "weight_scale is zero or non-finite everywhere: convention undecidable";
        note += ", guessed from the scales' magnitude (no config.json with a bitnet quantization_config beside the weights)";
        if (!range.empty()) note += "; " + range + ", trained absmean is far below 1";
        note += "; confidence " + confidence;
        if (confidence == "low" && (above || below) && !mixed)
            b.warnings.push_back("weight_scale convention guessed from magnitudes near 1 (" + range +
                                 "): values may be off by 1/scale²; put the model's config.json beside the weights");
    }
    for (auto& [index, e] : replace) {
        if (e.encoding != TensorEncoding::HFPacked) continue;
        const auto it = std::find_if(hf.begin(), hf.end(), [weight = index](const HfCandidate& c) { return c.weight == weight; });
        // Mixed files without a config: each tensor by its own magnitude (a stored 1.0 reads the same either way).
        e.packed.reciprocal_scale = q ? q->scale_divides() : mixed ? it->magnitude > 1 : magnitude_says_reciprocal;
        e.packed.note = std::string(e.packed.reciprocal_scale ? "weight_scale holds 1/absmean" : "weight_scale holds absmean") +
                        (q ? " (config.json)" : " (guessed from magnitude)");
    }
    b.notes.push_back(note);
}

}  // namespace

void detect_packed_tensors(CheckpointBuilder& b) {
    std::unordered_map<std::string, std::size_t> by_name;
    for (std::size_t i = 0; i < b.tensors.size(); ++i)
        if (b.tensors[i].in_state_dict) by_name.emplace(b.tensors[i].name, i);
    auto find = [&](const std::string& n) -> const std::size_t* {
        auto it = by_name.find(n);
        return it == by_name.end() ? nullptr : &it->second;
    };

    std::unordered_map<std::string, std::vector<std::int64_t>> table;
    const std::size_t* meta = find("__metadata__");
    if (meta) table = parse_shape_table(b.file_of(b.tensors[*meta]), b.tensors[*meta]);

    std::unordered_set<std::size_t> remove;
    std::vector<std::pair<std::size_t, TensorEntry>> replace;
    std::vector<HfCandidate> hf;
    std::size_t i2s_count = 0, i2s_from_table = 0;

    for (std::size_t i = 0; i < b.tensors.size(); ++i) {
        const TensorEntry& w = b.tensors[i];
        if (!w.in_state_dict || w.dtype != DType::U8 || !ends_with(w.name, ".weight")) continue;
        const std::string W = w.name;
        const std::string p = W.substr(0, W.size() - 7);
        const std::string where = b.file_of(w).display_name() + ": tensor '" + W + "'";
        const std::size_t* shape_t = find(p + "_shape");
        if (!shape_t) shape_t = find(W + "_shape");
        const std::size_t* scale_i2s = find(p + "_scale");
        const std::size_t* weight_scale = find(W + "_scale");  // "<p>.weight_scale"
        auto from_table = table.find(W);
        if (from_table == table.end()) from_table = table.find(p);
        const bool has_shape = shape_t || from_table != table.end();
        // A uint8 weight without packing helpers is just a uint8 tensor.
        if (!has_shape && !(weight_scale && w.shape.size() == 2)) continue;
        if (!w.is_contiguous())
            throw FormatError(where, "a packed uint8 weight must be contiguous");

        TensorEntry e;
        e.name = W;
        e.path = w.path;
        e.in_state_dict = true;
        e.dtype = DType::F32;
        e.storage_key = w.storage_key;
        e.record = w.record;
        e.shard = w.shard;
        e.storage_file_offset = w.storage_file_offset;
        e.storage_nbytes = w.storage_nbytes;
        e.requires_grad = w.requires_grad;
        e.is_parameter = w.is_parameter;
        e.packed.offset = w.storage_file_offset + static_cast<std::uint64_t>(w.storage_offset);
        e.packed.nbytes = static_cast<std::uint64_t>(w.numel());
        e.packed.parts.push_back(W);

        if (has_shape) {
            const std::size_t* scale = scale_i2s ? scale_i2s : weight_scale;
            if (!scale) throw FormatError(where, "i2s-packed weight has a shape but no " + p + "_scale");
            if (shape_t) {
                const TensorEntry& st = b.tensors[*shape_t];
                if (dtype_is_floating(st.dtype) || st.shape.size() > 1)
                    throw FormatError(where, "its shape buffer '" + st.name + "' is not a 1-D integer tensor");
                for (double d : read_all(b.file_of(st), st, 64)) {
                    if (!(d >= 0 && d < 0x1p62) || d != std::floor(d)) throw FormatError(where, "its shape buffer holds " + fmt("%.4g", d));
                    e.shape.push_back(static_cast<std::int64_t>(d));
                }
                e.packed.parts.push_back(st.name);
                remove.insert(*shape_t);
            } else {
                e.shape = from_table->second;
                ++i2s_from_table;
            }
            const TensorEntry& sc = b.tensors[*scale];
            if (!dtype_is_floating(sc.dtype)) throw FormatError(where, "its scale '" + sc.name + "' is not floating-point");
            // At most one scale per row, and no more rows than four codes per stored byte give.
            auto values = read_all(b.file_of(sc), sc, 4 * w.numel() + 1);
            const std::int64_t rows = e.shape.empty() ? 1 : e.shape[0];
            std::int64_t numel = 1;
            for (auto d : e.shape)
                if (__builtin_mul_overflow(numel, d, &numel)) throw FormatError(where, "its shape overflows");
            if (values.size() == 1) e.packed.scale_group = std::max<std::int64_t>(numel, 1);
            else if (static_cast<std::int64_t>(values.size()) == rows && rows > 0) e.packed.scale_group = numel / rows;
            else
                throw FormatError(where, "its scale '" + sc.name + "' has " + std::to_string(values.size()) +
                                             " values: expected 1 or one per output row (" + std::to_string(rows) + ")");
            for (double v : values) e.packed.scales.push_back(static_cast<float>(v));
            e.packed.parts.push_back(sc.name);
            remove.insert(*scale);
            e.encoding = TensorEncoding::I2S;
            ++i2s_count;
            replace.emplace_back(i, std::move(e));
        } else if (weight_scale && w.shape.size() == 2) {
            const TensorEntry& sc = b.tensors[*weight_scale];
            if (!dtype_is_floating(sc.dtype)) continue;
            auto values = read_all(b.file_of(sc), sc, 4 * w.numel() + 1);
            const std::int64_t R = w.shape[0], in = w.shape[1];
            if (R > (std::int64_t(1) << 60)) throw FormatError(where, "has an absurd row count " + std::to_string(R));
            e.shape = {4 * R, in};
            if (values.size() == 1) e.packed.scale_group = std::max<std::int64_t>(4 * R * in, 1);
            else if (static_cast<std::int64_t>(values.size()) == 4 * R) e.packed.scale_group = in;
            else
                throw FormatError(where, "its weight_scale has " + std::to_string(values.size()) +
                                             " values: expected 1 or one per output row (" + std::to_string(4 * R) + ")");
            HfCandidate c{i, *weight_scale, {}, 0};
            std::vector<double> mags;
            for (double v : values) {
                c.scales.push_back(static_cast<float>(v));
                if (std::isfinite(v) && v != 0) mags.push_back(std::fabs(v));
            }
            std::sort(mags.begin(), mags.end());
            c.magnitude = mags.empty() ? 0.0 : mags[mags.size() / 2];
            e.encoding = TensorEncoding::HFPacked;
            e.packed.packed_rows = R;
            e.packed.scales = c.scales;
            e.packed.parts.push_back(sc.name);
            remove.insert(*weight_scale);
            hf.push_back(std::move(c));
            replace.emplace_back(i, std::move(e));
        }
    }

    if (!hf.empty()) settle_hf_scale_convention(b, hf, replace);
    if (i2s_count) {
        std::string note = "i2s-packed ternary weights (Distillix layout): " + std::to_string(i2s_count) + " tensor(s)";
        if (i2s_from_table)
            note += ", shapes of " + std::to_string(i2s_from_table) +
                    " from the JSON uint8 tensor __metadata__ (a safetensors layout standard loaders refuse)";
        b.notes.push_back(note);
        if (meta && i2s_from_table) remove.insert(*meta);
    }
    if (replace.empty()) return;

    for (auto& [index, e] : replace) {
        if (meta && i2s_from_table && e.encoding == TensorEncoding::I2S) e.packed.parts.push_back("__metadata__");
        TensorData check(b.file_of(e), e);  // sizes against the shape, exactly
        check.check_codes();
        b.tensors[index] = std::move(e);
    }
    std::vector<TensorEntry> kept;
    kept.reserve(b.tensors.size());
    for (std::size_t i = 0; i < b.tensors.size(); ++i)
        if (!remove.count(i)) kept.push_back(std::move(b.tensors[i]));
    b.tensors = std::move(kept);
}

}  // namespace bitfsck::io
