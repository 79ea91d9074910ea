// bitfsck convert IN OUT: between .pt, safetensors, i2s-packed .pt, Hugging Face packed
// safetensors, GGUF (TQ2_0 / TQ1_0) and .bit2. Packing never guesses: a weight that is not
// exactly ternary is refused unless --quantize asks for the absmean quantizer, and then the loss
// is reported.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/bit2.hpp"
#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/gguf.hpp"
#include "bitfsck/io/packed.hpp"
#include "bitfsck/io/pt_writer.hpp"
#include "bitfsck/io/safetensors_writer.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

namespace fs = std::filesystem;

enum class Target { Pt, Safetensors, I2sPt, HfSafetensors, GgufTq2, GgufTq1, Bit2 };

struct ConvertFlags {
    std::string input, output, to;
    bool pack = false, unpack = false, quantize = false;
};

std::string fmt(const char* f, double v) {
    char buf[48];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

std::string shape_text(const std::vector<std::int64_t>& s) {
    std::string o = "[";
    for (std::size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
    return o + "]";
}

Target pick_target(const ConvertFlags& f) {
    if (!f.to.empty()) {
        const std::string& t = f.to;
        if (t == "pt") return f.pack ? Target::I2sPt : Target::Pt;
        if (t == "safetensors") return f.pack ? Target::HfSafetensors : Target::Safetensors;
        if (t == "i2s" || t == "i2s-pt") return Target::I2sPt;
        if (t == "hf" || t == "hf-packed") return Target::HfSafetensors;
        if (t == "gguf" || t == "gguf-tq2_0" || t == "tq2_0") return Target::GgufTq2;
        if (t == "gguf-tq1_0" || t == "tq1_0") return Target::GgufTq1;
        if (t == "bit2") return Target::Bit2;
        throw CLI::ValidationError("--to", "unknown format '" + t + "' (pt, safetensors, i2s-pt, hf-packed, gguf-tq2_0, gguf-tq1_0, bit2)");
    }
    const std::string ext = fs::path(f.output).extension().string();
    if (ext == ".pt" || ext == ".pth" || ext == ".bin") return f.pack ? Target::I2sPt : Target::Pt;
    if (ext == ".safetensors") return f.pack ? Target::HfSafetensors : Target::Safetensors;
    if (ext == ".gguf") return Target::GgufTq2;
    if (ext == ".bit2") return Target::Bit2;
    throw CLI::ValidationError("OUT", "cannot tell the format from '" + ext + "': name it .pt, .safetensors, .gguf or .bit2, or pass --to");
}

const char* target_name(Target t) {
    switch (t) {
        case Target::Pt: return "pt";
        case Target::Safetensors: return "safetensors";
        case Target::I2sPt: return "i2s-packed pt";
        case Target::HfSafetensors: return "Hugging Face packed safetensors";
        case Target::GgufTq2: return "GGUF TQ2_0";
        case Target::GgufTq1: return "GGUF TQ1_0";
        case Target::Bit2: return "bit2";
    }
    return "?";
}

bool target_packs(Target t, const ConvertFlags& f) {
    if (f.unpack) return false;
    return t == Target::I2sPt || t == Target::HfSafetensors || t == Target::GgufTq2 || t == Target::GgufTq1 || t == Target::Bit2;
}

// BitLinear weights: 2-D ".weight" matrices other than embeddings, norms and the output head.
bool is_pack_candidate(const io::TensorEntry& e) {
    if (io::encoding_is_ternary(e.encoding)) return true;
    if (e.shape.size() != 2 || !io::dtype_is_floating(e.dtype) || e.name.size() < 6 ||
        e.name.compare(e.name.size() - 6, 6, "weight") != 0)
        return false;
    for (const char* skip : {"embed", "norm", "lm_head", "wte", "wpe", "tok_"})
        if (e.name.find(skip) != std::string::npos) return false;
    return true;
}

// A tensor on its way out: plain bytes of a dtype, or a ternary view.
struct Item {
    std::string name;
    std::vector<std::int64_t> shape;
    io::DType dtype = io::DType::F32;
    std::vector<std::byte> bytes;
    std::optional<io::TernaryTensor> ternary;
};

// Contiguous bytes of a plain tensor, whatever its strides.
std::vector<std::byte> plain_bytes(const io::Checkpoint& c, const io::TensorEntry& e) {
    const std::size_t elem = io::dtype_size(e.dtype);
    std::vector<std::byte> out(static_cast<std::size_t>(e.numel()) * elem);
    const std::byte* base = c.file().bytes(e.storage_file_offset, e.storage_nbytes, "tensor storage").data();
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

std::vector<float> float_values(const io::Checkpoint& c, const io::TensorEntry& e) {
    io::TensorData d = c.data(e);
    std::vector<float> v(static_cast<std::size_t>(d.numel()));
    d.read(0, d.numel(), v.data());
    return v;
}

std::vector<std::byte> to_bytes(const std::vector<float>& v) {
    std::vector<std::byte> b(v.size() * 4);
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
std::vector<float> block_scales(const io::TernaryTensor& t) {
    std::vector<float> out(static_cast<std::size_t>(t.numel() / io::kGgmlBlockK));
    for (std::size_t b = 0; b < out.size(); ++b) out[b] = t.scale_at(static_cast<std::int64_t>(b) * io::kGgmlBlockK);
    return out;
}

// Why `t` cannot be packed into `target`'s layout, or "" when it can.
std::string layout_problem(const io::TernaryTensor& t, Target target) {
    const bool simple = t.per_tensor() || t.per_channel();
    switch (target) {
        case Target::I2sPt:
        case Target::Bit2:
            return simple ? "" : "its scales vary within rows (GGUF blocks); this layout has one scale per tensor or per row";
        case Target::HfSafetensors:
            if (t.shape.size() != 2 || t.rows() % 4 != 0) return "the Hugging Face layout needs a 2-D weight with a multiple of 4 rows";
            return simple ? "" : "its scales vary within rows; weight_scale holds one per tensor or per row";
        case Target::GgufTq2:
        case Target::GgufTq1:
            if (t.shape.empty() || t.shape.back() % io::kGgmlBlockK != 0)
                return "ggml ternary types need rows of a multiple of 256 elements";
            if (!t.per_tensor() && !(t.scale_group % io::kGgmlBlockK == 0)) return "its scales do not align with 256-element blocks";
            return "";
        default: return "";
    }
}

std::string fractions_text(const io::TernaryTensor& t) {
    auto f = t.fractions();
    return fmt("%.1f", 100 * f[0]) + "/" + fmt("%.1f", 100 * f[1]) + "/" + fmt("%.1f", 100 * f[2]) + " % -1/0/+1";
}

std::optional<io::GgmlType> ggml_plain_type(io::DType d) {
    switch (d) {
        case io::DType::F32: return io::GgmlType::F32;
        case io::DType::F16: return io::GgmlType::F16;
        case io::DType::BF16: return io::GgmlType::BF16;
        case io::DType::F64: return io::GgmlType::F64;
        case io::DType::I8: return io::GgmlType::I8;
        case io::DType::I16: return io::GgmlType::I16;
        case io::DType::I32: return io::GgmlType::I32;
        case io::DType::I64: return io::GgmlType::I64;
        default: return std::nullopt;
    }
}

void write_output(const std::vector<Item>& items, Target target, const fs::path& in, const fs::path& out) {
    if (target == Target::Pt || target == Target::I2sPt || target == Target::Safetensors || target == Target::HfSafetensors) {
        std::vector<io::OutputTensor> tensors;
        auto plain = [&](const std::string& name, io::DType dtype, std::vector<std::int64_t> shape, std::vector<std::byte> bytes) {
            io::OutputTensor o;
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
            const io::TernaryTensor& t = *it.ternary;
            const std::vector<std::int64_t> scale_shape =
                t.per_tensor() ? std::vector<std::int64_t>{} : std::vector<std::int64_t>{t.rows()};
            std::vector<float> scales = t.scales;
            std::vector<std::uint8_t> packed;
            std::vector<std::int64_t> packed_shape;
            if (target == Target::I2sPt) {
                packed = io::pack_i2s(t.codes);
                packed_shape = {static_cast<std::int64_t>(packed.size())};
            } else {
                packed = io::pack_hf(t.codes, t.rows(), t.cols());
                packed_shape = {t.rows() / 4, t.cols()};
                for (float& s : scales) s = exact_reciprocal(s);
            }
            std::vector<std::byte> pb(packed.size());
            if (!packed.empty()) std::memcpy(pb.data(), packed.data(), packed.size());
            plain(it.name, io::DType::U8, packed_shape, std::move(pb));
            const std::string prefix = it.name.size() > 7 && it.name.ends_with(".weight") ? it.name.substr(0, it.name.size() - 7) : it.name;
            if (target == Target::I2sPt) {
                std::vector<std::byte> sb(t.shape.size() * 8);
                for (std::size_t d = 0; d < t.shape.size(); ++d) std::memcpy(sb.data() + d * 8, &t.shape[d], 8);
                plain(prefix + "_shape", io::DType::I64, {static_cast<std::int64_t>(t.shape.size())}, std::move(sb));
                plain(prefix + "_scale", io::DType::F32, scale_shape, to_bytes(scales));
            } else {
                plain(it.name + "_scale", io::DType::F32, t.per_tensor() ? std::vector<std::int64_t>{1} : scale_shape, to_bytes(scales));
            }
        }
        if (target == Target::Pt || target == Target::I2sPt) {
            io::PtWriteOptions options;
            options.inputs = {in};
            io::write_state_dict_pt(out, tensors, options);
        } else {
            io::write_safetensors(out, tensors, {{"format", "pt"}}, {in});
        }
        return;
    }
    if (target == Target::Bit2) {
        std::vector<io::Bit2Tensor> tensors;
        for (const auto& it : items) {
            io::Bit2Tensor b;
            b.name = it.name;
            b.shape = it.shape;
            b.dtype = it.dtype;
            b.plain = it.bytes;
            b.ternary = it.ternary;
            tensors.push_back(std::move(b));
        }
        io::write_bit2(out, tensors, {{"source", in.filename().string()}});
        return;
    }
    std::vector<io::GgufTensorOut> tensors;
    for (const auto& it : items) {
        io::GgufTensorOut g;
        g.name = it.name;
        g.shape = it.shape;
        if (it.ternary) {
            const auto scales = block_scales(*it.ternary);
            g.type = target == Target::GgufTq1 ? io::GgmlType::TQ1_0 : io::GgmlType::TQ2_0;
            g.data = target == Target::GgufTq1 ? io::pack_tq1_0(it.ternary->codes, scales) : io::pack_tq2_0(it.ternary->codes, scales);
        } else {
            auto type = ggml_plain_type(it.dtype);
            if (!type) throw Error(out.string() + ": tensor '" + it.name + "' of dtype " + std::string(io::dtype_name(it.dtype)) +
                                   " has no GGUF type");
            g.type = *type;
            g.data.resize(it.bytes.size());
            if (!it.bytes.empty()) std::memcpy(g.data.data(), it.bytes.data(), it.bytes.size());
        }
        tensors.push_back(std::move(g));
    }
    io::write_gguf(out, {{"general.architecture", std::string("bitfsck")}, {"general.name", in.stem().string()},
                         {"general.source.file", in.filename().string()}},
                   tensors);
}

void run_convert(const ConvertFlags& f) {
    if (f.pack && f.unpack) throw CLI::ValidationError("--pack", "--pack and --unpack exclude each other");
    const Target target = pick_target(f);
    const fs::path in = f.input, out = f.output;
    io::ensure_not_an_input(out, {in});
    io::Checkpoint c = io::Checkpoint::open(in);
    const bool pack = target_packs(target, f);

    std::vector<Item> items;
    std::vector<std::string> refused, report;
    std::size_t packed = 0, quantized = 0;
    for (const io::TensorEntry* e : c.state_dict_tensors()) {
        Item it;
        it.name = e->name;
        it.shape = e->shape;
        if (e->encoding == io::TensorEncoding::Opaque)
            throw io::FormatError(in.string(), "tensor '" + e->name + "' cannot be converted: " + e->packed.note);
        std::optional<io::TernaryTensor> view;
        if (io::encoding_is_ternary(e->encoding)) {
            view = io::read_ternary(c.data(*e), e->name);
        } else if (pack && is_pack_candidate(*e)) {
            const auto values = float_values(c, *e);
            std::string why;
            view = io::exact_ternary(e->name, e->shape, values, &why);
            if (!view && f.quantize) {
                io::QuantizeLoss loss;
                view = io::absmean_quantize(e->name, e->shape, values, &loss);
                ++quantized;
                report.push_back("quantized " + e->name + " " + shape_text(e->shape) + " with absmean: relative L2 error " +
                                 fmt("%.4f", loss.relative_l2) + ", " + fmt("%.1f", 100 * loss.changed) + "% of values changed");
            } else if (!view) {
                refused.push_back(e->name + " " + why);
                continue;
            }
        }
        if (view && pack) {
            if (std::string problem = layout_problem(*view, target); !problem.empty()) {
                print_warning("stored " + e->name + " " + shape_text(e->shape) + " unpacked (float32): " + problem);
                view.reset();
                it.dtype = io::DType::F32;
                it.bytes = to_bytes(float_values(c, *e));
            } else {
                std::string line = "packed " + e->name + " " + shape_text(e->shape) + ": " + fractions_text(*view) + ", scale " +
                                   (view->per_tensor() ? fmt("%.6g", view->scales[0]) : std::to_string(view->scales.size()) + " values");
                if (target == Target::GgufTq1 || target == Target::GgufTq2) {
                    double worst = 0;
                    for (float s : view->scales)
                        if (s != 0) worst = std::max<double>(worst, std::fabs(io::half_to_float(io::float_to_half(s)) - s) / std::fabs(s));
                    if (worst > 0) line += " (rounded to fp16 by the format: relative change up to " + fmt("%.2g", worst) + ")";
                }
                report.push_back(line);
                ++packed;
                it.ternary = std::move(view);
            }
        } else if (view) {
            it.dtype = io::DType::F32;
            it.bytes = to_bytes(io::ternary_values(*view));
        } else if (e->encoding != io::TensorEncoding::Plain) {
            it.dtype = io::DType::F32;  // Q8_0 and other decodable encodings: their float values
            it.bytes = to_bytes(float_values(c, *e));
        } else {
            it.dtype = e->dtype;
            it.bytes = plain_bytes(c, *e);
        }
        items.push_back(std::move(it));
    }
    if (!refused.empty()) {
        std::string msg = "refusing to pack " + std::to_string(refused.size()) +
                          " weight(s) that are not ternary (pass --quantize to ternarise them with the absmean quantizer, lossy): ";
        for (std::size_t i = 0; i < refused.size(); ++i) msg += (i ? "; " : "") + refused[i];
        throw Error(msg);
    }
    write_output(items, target, in, out);
    for (const auto& n : c.notes()) std::cerr << "note: " << n << "\n";
    for (const auto& line : report) std::cout << line << "\n";
    std::cout << "wrote " << out.string() << " (" << target_name(target) << "): " << items.size() << " tensors, " << packed
              << " packed" << (quantized ? ", " + std::to_string(quantized) + " quantized" : std::string()) << "\n";
}

}  // namespace

void add_convert_subcommand(CLI::App& app) {
    auto flags = std::make_shared<ConvertFlags>();
    auto* sub = app.add_subcommand("convert", "Convert between .pt, safetensors, packed ternary layouts, GGUF and .bit2");
    sub->add_option("input", flags->input, "Checkpoint to read (any format bitfsck reads)")->required()->check(CLI::ExistingFile);
    sub->add_option("output", flags->output, "File to write (never the input)")->required();
    sub->add_option("--to", flags->to, "Output format: pt, safetensors, i2s-pt, hf-packed, gguf-tq2_0, gguf-tq1_0, bit2 (default: from the extension)");
    sub->add_flag("--pack", flags->pack, "Pack ternary weights (.pt → i2s layout, .safetensors → Hugging Face layout)");
    sub->add_flag("--unpack", flags->unpack, "Store every tensor as floats (code × scale), even in .gguf / .bit2");
    sub->add_flag("--quantize", flags->quantize, "Ternarise non-ternary weights with the absmean quantizer when packing (lossy; the loss is reported)");
    sub->footer(
        "Examples:\n  bitfsck convert model.pt model.gguf --quantize\n  bitfsck convert packed.pt plain.safetensors\n"
        "  bitfsck convert model.safetensors model.bit2\n"
        "Exit codes: 0 written, 1 bad arguments or a refused conversion, 2 unreadable input.");
    sub->callback([flags] {
        run_reporting_errors([&] {
            run_convert(*flags);
        });
    });
}

}  // namespace bitfsck::cli
