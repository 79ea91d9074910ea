// The conversions behind `bitfsck convert` and the app: decode every state-dict tensor, decide
// per tensor what the target layout stores (packed ternary or floats), and write the output.
#include "bitfsck/io/convert.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/bit2.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/gguf.hpp"
#include "bitfsck/io/json_document.hpp"
#include "bitfsck/io/pt_writer.hpp"
#include "bitfsck/io/safetensors_writer.hpp"
#include "bitfsck/io/shard_writer.hpp"
#include "bitfsck/io/tensor_names.hpp"

namespace bitfsck::io {

namespace fs = std::filesystem;

std::optional<ConvertTarget> convert_target_from_name(std::string_view t, bool pack) {
    if (t == "pt") return pack ? ConvertTarget::I2sPt : ConvertTarget::Pt;
    if (t == "safetensors") return pack ? ConvertTarget::HfSafetensors : ConvertTarget::Safetensors;
    if (t == "i2s" || t == "i2s-pt") return ConvertTarget::I2sPt;
    if (t == "hf" || t == "hf-packed") return ConvertTarget::HfSafetensors;
    if (t == "gguf" || t == "gguf-tq2_0" || t == "tq2_0") return ConvertTarget::GgufTq2;
    if (t == "gguf-tq1_0" || t == "tq1_0") return ConvertTarget::GgufTq1;
    if (t == "bit2") return ConvertTarget::Bit2;
    return std::nullopt;
}

std::optional<ConvertTarget> convert_target_from_extension(const fs::path& output, bool pack) {
    fs::path p = output;
    if (p.filename().empty()) p = p.parent_path();
    const std::string ext = p.extension().string();
    if (ext == ".pt" || ext == ".pth" || ext == ".bin") return pack ? ConvertTarget::I2sPt : ConvertTarget::Pt;
    if (ext == ".safetensors") return pack ? ConvertTarget::HfSafetensors : ConvertTarget::Safetensors;
    if (ext == ".gguf") return ConvertTarget::GgufTq2;
    if (ext == ".bit2") return ConvertTarget::Bit2;
    return std::nullopt;
}

std::string_view convert_target_name(ConvertTarget t) {
    switch (t) {
        case ConvertTarget::Pt: return "pt";
        case ConvertTarget::Safetensors: return "safetensors";
        case ConvertTarget::I2sPt: return "i2s-packed pt";
        case ConvertTarget::HfSafetensors: return "Hugging Face packed safetensors";
        case ConvertTarget::GgufTq2: return "GGUF TQ2_0";
        case ConvertTarget::GgufTq1: return "GGUF TQ1_0";
        case ConvertTarget::Bit2: return "bit2";
    }
    return "?";
}

bool convert_target_packs(ConvertTarget t) { return t != ConvertTarget::Pt && t != ConvertTarget::Safetensors; }

namespace {

bool is_gguf(ConvertTarget t) { return t == ConvertTarget::GgufTq2 || t == ConvertTarget::GgufTq1; }

// What BitLinear quantizes: the block projections by tensor_names.hpp's roles, and 2-D weights
// the table cannot place (a packer that skipped them would leave a model half converted).
// Embeddings, positions, norms and the output head stay floats, as llama.cpp's converters keep them.
bool is_pack_candidate(const TensorEntry& e) {
    if (encoding_is_ternary(e.encoding)) return true;
    if (e.shape.size() != 2 || !dtype_is_floating(e.dtype)) return false;
    const TensorPlace place = place_of(e.name);
    return place.is_weight && (role_is_ternary_matrix(place.role) || place.role == Role::Other);
}

// A tensor on its way out: plain bytes of a dtype, or a ternary view.
struct Item {
    const TensorEntry* entry = nullptr;
    std::string name;
    std::vector<std::int64_t> shape;
    DType dtype = DType::F32;
    std::vector<std::byte> bytes;
    std::optional<TernaryTensor> ternary;
    ConvertedTensor* report = nullptr;
};

// Contiguous bytes of a plain tensor, whatever its strides.
std::vector<std::byte> plain_bytes(const Checkpoint& c, const TensorEntry& e) {
    const std::size_t elem = dtype_size(e.dtype);
    std::vector<std::byte> out(static_cast<std::size_t>(e.numel()) * elem);
    const std::byte* base = c.file_of(e).bytes(e.storage_file_offset, e.storage_nbytes, "tensor storage").data();
    if (e.is_contiguous()) {
        if (!out.empty()) std::memcpy(out.data(), base + e.storage_offset * static_cast<std::int64_t>(elem), out.size());
        return out;
    }
    std::vector<std::int64_t> index(e.shape.size(), 0);
    for (std::int64_t i = 0; i < e.numel(); ++i) {
        std::int64_t at = e.storage_offset;
        for (std::size_t d = 0; d < index.size(); ++d) at += index[d] * e.stride[d];
        std::memcpy(out.data() + static_cast<std::size_t>(i) * elem, base + at * static_cast<std::int64_t>(elem), elem);
        for (std::size_t d = index.size(); d-- > 0;) {
            if (++index[d] < e.shape[d]) break;
            index[d] = 0;
        }
    }
    return out;
}

std::vector<float> float_values(const Checkpoint& c, const TensorEntry& e) {
    TensorData d = c.data(e);
    std::vector<float> v(static_cast<std::size_t>(d.numel()));
    d.read(0, d.numel(), v.data());
    return v;
}

template <typename T>
std::vector<std::byte> to_bytes(const std::vector<T>& v) {
    std::vector<std::byte> b(v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
    return b;
}

// A float32 r whose reciprocal, as the reader computes it (1.0f / r), is exactly s: the HF
// layout stores 1/absmean, and a round trip must give back the same scale bit for bit.
float exact_reciprocal(float s) {
    if (s == 0 || !std::isfinite(s)) return s == 0 ? INFINITY : 0.0f;
    float r = 1.0f / s;
    for (int step = 0; step < 64; ++step) {
        for (float cand : {std::nextafter(r, 0.0f), r, std::nextafter(r, INFINITY)})
            if (1.0f / cand == s) return cand;
        r = (1.0f / r > s) ? std::nextafter(r, INFINITY) : std::nextafter(r, 0.0f);
    }
    return 1.0f / s;
}

// Per-element-group scales of a view as one per 256-block (GGUF) — rounded to fp16 by the packer.
std::vector<float> block_scales(const TernaryTensor& t) {
    std::vector<float> out(static_cast<std::size_t>(t.numel() / kGgmlBlockK));
    for (std::size_t b = 0; b < out.size(); ++b) out[b] = t.scale_at(static_cast<std::int64_t>(b) * kGgmlBlockK);
    return out;
}

// Why `t` cannot be packed into `target`'s layout, or "" when it can.
std::string layout_problem(const TernaryTensor& t, ConvertTarget target) {
    const bool simple = t.per_tensor() || t.per_channel();
    switch (target) {
        case ConvertTarget::I2sPt:
        case ConvertTarget::Bit2:
            return simple ? "" : "its scales vary within rows (GGUF blocks); this layout has one scale per tensor or per row";
        case ConvertTarget::HfSafetensors:
            if (t.shape.size() != 2 || t.rows() % 4 != 0) return "the Hugging Face layout needs a 2-D weight with a multiple of 4 rows";
            return simple ? "" : "its scales vary within rows; weight_scale holds one per tensor or per row";
        case ConvertTarget::GgufTq2:
        case ConvertTarget::GgufTq1:
            if (t.shape.empty() || t.shape.back() % kGgmlBlockK != 0)
                return "ggml ternary types need rows of a multiple of 256 elements, these have " + std::to_string(t.shape.back());
            if (!t.per_tensor() && !(t.scale_group % kGgmlBlockK == 0)) return "its scales do not align with 256-element blocks";
            return "";
        default: return "";
    }
}

std::optional<GgmlType> ggml_plain_type(DType d) {
    switch (d) {
        case DType::F32: return GgmlType::F32;
        case DType::F16: return GgmlType::F16;
        case DType::BF16: return GgmlType::BF16;
        case DType::F64: return GgmlType::F64;
        case DType::I8: return GgmlType::I8;
        case DType::I16: return GgmlType::I16;
        case DType::I32: return GgmlType::I32;
        case DType::I64: return GgmlType::I64;
        default: return std::nullopt;
    }
}

// --- GGUF: llama.cpp's names and architecture keys -----------------------------------------

std::string gguf_architecture_of(const Checkpoint& c, const ConvertOptions& o) {
    if (!o.gguf_architecture.empty()) return o.gguf_architecture;
    for (const TensorEntry* t : c.state_dict_tensors())
        if (t->name.find("sub_norm") != std::string::npos) return "bitnet";
    return "llama";
}

// {arch}.block_count, embedding_length, feed_forward_length and vocab_size from the shapes;
// head counts from config.json when it is there (the shapes do not determine them).
std::vector<std::pair<std::string, GgufMeta>> gguf_metadata(const Checkpoint& c, const std::string& arch, const fs::path& in) {
    std::vector<std::pair<std::string, GgufMeta>> m = {{"general.architecture", arch},
                                                       {"general.name", in.stem().string()},
                                                       {"general.source.file", in.filename().string()}};
    int layers = 0;
    std::int64_t embd = 0, ff = 0, vocab = 0;
    for (const TensorEntry* t : c.state_dict_tensors()) {
        const TensorPlace p = place_of(t->name);
        if (p.layer && role_is_ternary_matrix(p.role)) layers = std::max(layers, *p.layer + 1);
        if (p.role == Role::Embedding && t->shape.size() == 2) vocab = t->shape[0], embd = t->shape[1];
        if (p.role == Role::MlpUp && t->shape.size() == 2) ff = t->shape[0];
    }
    if (layers) m.emplace_back(arch + ".block_count", static_cast<std::uint32_t>(layers));
    if (embd) m.emplace_back(arch + ".embedding_length", static_cast<std::uint32_t>(embd));
    if (ff) m.emplace_back(arch + ".feed_forward_length", static_cast<std::uint32_t>(ff));
    if (vocab) m.emplace_back(arch + ".vocab_size", static_cast<std::uint32_t>(vocab));
    if (c.config()) {
        const auto& j = c.config()->json;
        auto put = [&](const char* key, const std::string& gguf_key) {
            if (auto it = j.find(key); it != j.end() && it->is_number_unsigned())
                m.emplace_back(arch + gguf_key, static_cast<std::uint32_t>(it->get<std::uint64_t>()));
        };
        put("num_attention_heads", ".attention.head_count");
        put("num_key_value_heads", ".attention.head_count_kv");
        put("max_position_embeddings", ".context_length");
        if (auto it = j.find("rms_norm_eps"); it != j.end() && it->is_number())
            m.emplace_back(arch + ".attention.layer_norm_rms_epsilon", it->get<float>());
        if (auto it = j.find("rope_theta"); it != j.end() && it->is_number()) m.emplace_back(arch + ".rope.freq_base", it->get<float>());
    }
    return m;
}

// Embeddings and the output head as F16 (convert_hf_to_gguf.py: TOKEN_EMBD and OUTPUT), norms
// and 1-D tensors as F32; other float tensors keep their dtype.
std::pair<GgmlType, std::vector<std::byte>> gguf_float_tensor(const Checkpoint& c, const TensorEntry& e, const Item& it) {
    const Role role = place_of(e.name).role;
    if (io::dtype_is_floating(it.dtype) && e.encoding == TensorEncoding::Plain) {
        if ((role == Role::Embedding || role == Role::Head) && e.shape.size() == 2) {
            std::vector<std::uint16_t> h;
            for (float v : float_values(c, e)) h.push_back(float_to_half(v));
            return {GgmlType::F16, to_bytes(h)};
        }
        if (role == Role::Norm || e.shape.size() <= 1) return {GgmlType::F32, to_bytes(float_values(c, e))};
    }
    auto type = ggml_plain_type(it.dtype);
    if (!type) throw ConvertRefused("tensor '" + it.name + "' of dtype " + std::string(dtype_name(it.dtype)) + " has no GGUF type");
    return {*type, it.bytes};
}

std::string gguf_type_label(GgmlType t) { return ggml_type_name(static_cast<std::uint32_t>(t)); }

void write_gguf_output(const Checkpoint& c, std::vector<Item>& items, const ConvertOptions& o, const fs::path& in,
                       const fs::path& out, ConvertReport& report) {
    report.gguf_architecture = gguf_architecture_of(c, o);
    std::vector<GgufTensorOut> tensors;
    for (auto& it : items) {
        GgufTensorOut g;
        const auto name = gguf_tensor_name(it.name);
        g.name = name.value_or(it.name);
        if (!name) it.report->note += (it.report->note.empty() ? "" : "; ") + std::string("no llama.cpp name for it: kept as it is");
        g.shape = it.shape;
        if (it.ternary) {
            const auto scales = block_scales(*it.ternary);
            g.type = o.target == ConvertTarget::GgufTq1 ? GgmlType::TQ1_0 : GgmlType::TQ2_0;
            g.data = o.target == ConvertTarget::GgufTq1 ? pack_tq1_0(it.ternary->codes, scales) : pack_tq2_0(it.ternary->codes, scales);
        } else {
            auto [type, bytes] = gguf_float_tensor(c, *it.entry, it);
            g.type = type;
            g.data.resize(bytes.size());
            if (!bytes.empty()) std::memcpy(g.data.data(), bytes.data(), bytes.size());
        }
        it.report->output_name = g.name;
        it.report->stored_as = gguf_type_label(g.type);
        tensors.push_back(std::move(g));
    }
    write_gguf(out, gguf_metadata(c, report.gguf_architecture, in), tensors);
}

// --- .pt / safetensors / packed / .bit2 -------------------------------------------------------

std::vector<OutputTensor> output_tensors(const std::vector<Item>& items, ConvertTarget target) {
    std::vector<OutputTensor> tensors;
    auto plain = [&](const std::string& name, DType dtype, std::vector<std::int64_t> shape, std::vector<std::byte> bytes) {
        OutputTensor o;
        o.name = name;
        o.dtype = dtype;
        o.shape = std::move(shape);
        o.data = std::move(bytes);
        tensors.push_back(std::move(o));
    };
    for (const auto& it : items) {
        if (!it.ternary) {
            plain(it.name, it.dtype, it.shape, it.bytes);
            continue;
        }
        const TernaryTensor& t = *it.ternary;
        const std::vector<std::int64_t> scale_shape = t.per_tensor() ? std::vector<std::int64_t>{} : std::vector<std::int64_t>{t.rows()};
        std::vector<float> scales = t.scales;
        std::vector<std::uint8_t> packed;
        std::vector<std::int64_t> packed_shape;
        if (target == ConvertTarget::I2sPt) {
            packed = pack_i2s(t.codes);
            packed_shape = {static_cast<std::int64_t>(packed.size())};
        } else {
            packed = pack_hf(t.codes, t.rows(), t.cols());
            packed_shape = {t.rows() / 4, t.cols()};
            for (float& s : scales) s = exact_reciprocal(s);
        }
        plain(it.name, DType::U8, packed_shape, to_bytes(packed));
        const std::string prefix = it.name.size() > 7 && it.name.ends_with(".weight") ? it.name.substr(0, it.name.size() - 7) : it.name;
        if (target == ConvertTarget::I2sPt) {
            plain(prefix + "_shape", DType::I64, {static_cast<std::int64_t>(t.shape.size())}, to_bytes(t.shape));
            plain(prefix + "_scale", DType::F32, scale_shape, to_bytes(scales));
        } else {
            plain(it.name + "_scale", DType::F32, t.per_tensor() ? std::vector<std::int64_t>{1} : scale_shape, to_bytes(scales));
        }
    }
    return tensors;
}

void write_other_output(const Checkpoint& c, std::vector<Item>& items, const ConvertOptions& o, const fs::path& in,
                        const fs::path& out) {
    const ConvertTarget target = o.target;
    for (auto& it : items) {
        it.report->output_name = it.name;
        if (it.report->stored_as.empty())
            it.report->stored_as = it.ternary ? (target == ConvertTarget::I2sPt ? "i2s" : target == ConvertTarget::Bit2 ? "bit2 ternary" : "hf-packed")
                                              : std::string(dtype_name(it.dtype));
    }
    if (target == ConvertTarget::Bit2) {
        std::vector<Bit2Tensor> tensors;
        for (const auto& it : items) {
            Bit2Tensor b;
            b.name = it.name;
            b.shape = it.shape;
            b.dtype = it.dtype;
            b.plain = it.bytes;
            b.ternary = it.ternary;
            tensors.push_back(std::move(b));
        }
        write_bit2(out, tensors, {{"source", in.filename().string()}});
        return;
    }
    const bool pickles = target == ConvertTarget::Pt || target == ConvertTarget::I2sPt;
    if (c.sharded()) {
        // One model in, one model out, sharded the same way: each tensor (with its packing helpers)
        // in the shard that held it.
        std::vector<std::vector<OutputTensor>> by_shard(c.shards().size());
        for (auto& it : items) {
            auto written = output_tensors({it}, target);
            for (auto& t : written) by_shard[it.entry->shard].push_back(std::move(t));
        }
        write_shards_like(c, out, by_shard, pickles ? Format::TorchZip : Format::Safetensors);
        return;
    }
    std::vector<OutputTensor> tensors = output_tensors(items, target);
    if (pickles) {
        PtWriteOptions options;
        options.inputs = {in};
        write_state_dict_pt(out, tensors, options);
    } else {
        write_safetensors(out, tensors, {{"format", "pt"}}, {in});
    }
}

}  // namespace

ConvertReport convert_checkpoint(const Checkpoint& c, const fs::path& out, const ConvertOptions& o) {
    const fs::path in = c.path();
    std::vector<fs::path> inputs;
    for (const auto& s : c.shards()) inputs.push_back(s.path);
    inputs.push_back(in);
    ensure_not_an_input(out, inputs);
    const bool pack = convert_target_packs(o.target) && !o.unpack;
    if (c.sharded() && (is_gguf(o.target) || o.target == ConvertTarget::Bit2) && fs::is_directory(out))
        throw ConvertRefused(out.string() + ": " + std::string(convert_target_name(o.target)) + " is written as one file, not a folder");

    ConvertReport report;
    report.output = out;
    report.target = o.target;
    report.notes = c.notes();
    report.notes.insert(report.notes.end(), c.warnings().begin(), c.warnings().end());
    const auto sd = c.state_dict_tensors();
    report.tensors.reserve(sd.size());
    std::vector<Item> items;
    std::vector<std::string> refused;
    ProgressTracker progress(o.progress, ProgressUnit::Tensors, sd.size());
    for (const TensorEntry* e : sd) {
        progress.advance(1, e->name);
        if (e->encoding == TensorEncoding::Opaque)
            throw FormatError(in.string(), "tensor '" + e->name + "' cannot be converted: " + e->packed.note);
        if (e->is_broadcast_view())
            throw FormatError(in.string(), e->name, "is a view of " + std::to_string(e->numel()) + " elements repeating a much smaller storage "
                                                    "(stride 0): written out it would not fit; not converted");
        ConvertedTensor& r = report.tensors.emplace_back();
        r.name = e->name;
        r.shape = e->shape;
        Item it;
        it.entry = e;
        it.name = e->name;
        it.shape = e->shape;
        std::optional<TernaryTensor> view;
        if (encoding_is_ternary(e->encoding)) {
            view = read_ternary(c.data(*e), e->name);
        } else if (pack && is_pack_candidate(*e)) {
            const auto values = float_values(c, *e);
            std::string why;
            view = exact_ternary(e->name, e->shape, values, &why);
            if (!view && o.quantize) {
                view = absmean_quantize(e->name, e->shape, values, &r.loss);
                r.quantized = true;
            } else if (!view) {
                refused.push_back(e->name + " " + why);
                continue;
            }
        }
        if (view && pack) {
            if (std::string problem = layout_problem(*view, o.target); !problem.empty()) {
                // The values go out as they came in: a quantization the layout cannot store is not applied.
                r.note = "not packed" + std::string(r.quantized ? " (nor quantized)" : "") + ": " + problem;
                r.quantized = false;
                ++report.stored_unpacked;
                if (e->encoding == TensorEncoding::Plain) {
                    it.dtype = e->dtype;
                    it.bytes = plain_bytes(c, *e);
                } else {
                    it.dtype = DType::F32;
                    it.bytes = to_bytes(float_values(c, *e));
                }
                view.reset();
            } else {
                r.packed = true;
                r.fractions = view->fractions();
                if (view->per_tensor()) r.scale = view->scales[0];
                r.scales = view->scales.size();
                if (is_gguf(o.target))
                    for (float s : view->scales)
                        if (s != 0) r.scale_rounding = std::max<double>(r.scale_rounding, std::fabs(half_to_float(float_to_half(s)) - s) / std::fabs(s));
                ++report.packed;
                it.ternary = std::move(view);
            }
        } else if (view) {
            it.dtype = DType::F32;
            it.bytes = to_bytes(ternary_values(*view));
        } else if (e->encoding != TensorEncoding::Plain) {
            it.dtype = DType::F32;  // Q8_0 and other decodable encodings: their float values
            it.bytes = to_bytes(float_values(c, *e));
        } else {
            it.dtype = e->dtype;
            it.bytes = plain_bytes(c, *e);
        }
        if (r.quantized) ++report.quantized;
        items.push_back(std::move(it));
    }
    if (!refused.empty()) {
        std::string msg = std::to_string(refused.size()) +
                          " weight(s) are not ternary (pass --quantize to ternarise them with the absmean quantizer, lossy): ";
        for (std::size_t i = 0; i < refused.size() && i < 3; ++i) msg += (i ? "; " : "") + refused[i];
        if (refused.size() > 3) msg += "; and " + std::to_string(refused.size() - 3) + " more";
        throw ConvertRefused(msg);
    }
    progress.check(true);  // the last chance to stop: nothing is written yet
    // One report row per item, in the same order; the rows no longer move.
    for (std::size_t i = 0; i < items.size(); ++i) items[i].report = &report.tensors[i];
    if (is_gguf(o.target)) write_gguf_output(c, items, o, in, out, report);
    else write_other_output(c, items, o, in, out);
    return report;
}

nlohmann::ordered_json to_json(const ConvertReport& r) {
    nlohmann::ordered_json j = json_document(1);
    j["command"] = "convert";
    j["output"] = r.output.string();
    j["target"] = std::string(convert_target_name(r.target));
    if (!r.gguf_architecture.empty()) j["gguf_architecture"] = r.gguf_architecture;
    j["packed"] = r.packed;
    j["quantized"] = r.quantized;
    j["stored_unpacked"] = r.stored_unpacked;
    j["notes"] = r.notes;
    j["tensors"] = nlohmann::ordered_json::array();
    for (const auto& t : r.tensors) {
        nlohmann::ordered_json tj{{"name", t.name}, {"output_name", t.output_name}, {"shape", t.shape}, {"stored_as", t.stored_as},
                                  {"packed", t.packed}, {"quantized", t.quantized}};
        if (t.packed) {
            tj["fractions"] = {{"neg", t.fractions[0]}, {"zero", t.fractions[1]}, {"pos", t.fractions[2]}};
            if (t.scale) tj["scale"] = *t.scale;
            tj["scales"] = t.scales;
            if (is_gguf(r.target)) tj["scale_rounding"] = t.scale_rounding;
        }
        if (t.quantized) tj["quantizer_loss"] = {{"relative_l2", t.loss.relative_l2}, {"changed", t.loss.changed}};
        if (!t.note.empty()) tj["note"] = t.note;
        j["tensors"].push_back(std::move(tj));
    }
    return j;
}

}  // namespace bitfsck::io
