// bitfsck convert IN OUT: between .pt, safetensors, i2s-packed .pt, Hugging Face packed
// safetensors, GGUF (TQ2_0 / TQ1_0) and .bit2. The rules are io::convert_checkpoint's; this file
// parses flags and prints its report.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/convert.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/text.hpp"
#include "scan_options.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

namespace fs = std::filesystem;

struct ConvertFlags {
    std::string input, output, output_option, to, arch;
    bool pack = false, unpack = false, quantize = false, json = false;
    std::string i2s_layout = "act-parallel";
};

io::ConvertTarget pick_target(const ConvertFlags& f) {
    if (!f.to.empty()) {
        if (auto t = io::convert_target_from_name(f.to, f.pack)) return *t;
        throw CLI::ValidationError("--to", "unknown format '" + f.to + "' (pt, safetensors, i2s-pt, hf-packed, gguf-tq2_0, gguf-tq1_0, bit2)");
    }
    if (auto t = io::convert_target_from_extension(f.output, f.pack)) return *t;
    throw CLI::ValidationError("OUT", "cannot tell the format from '" + fs::path(f.output).extension().string() +
                                          "': name it .pt, .safetensors, .gguf or .bit2, or pass --to");
}

void print_report(const io::ConvertReport& r) {
    for (const auto& t : r.tensors) {
        std::string line;
        if (t.packed) {
            line = (t.quantized ? "quantized and packed " : "packed ") + t.name + " " + shape_text(t.shape) + " as " + t.stored_as + ": " +
                   fmt("%.1f", 100 * t.fractions[0]) + "/" + fmt("%.1f", 100 * t.fractions[1]) + "/" + fmt("%.1f", 100 * t.fractions[2]) +
                   " % -1/0/+1, scale " + (t.scale ? fmt("%.6g", *t.scale) : std::to_string(t.scales) + " values");
            if (t.quantized)
                line += ", absmean quantizer: relative L2 error " + fmt("%.4f", t.loss.relative_l2) + ", " + fmt("%.1f", 100 * t.loss.changed) +
                        "% of values changed";
            if (t.scale_rounding > 0) line += " (rounded to fp16 by the format: relative change up to " + fmt("%.2g", t.scale_rounding) + ")";
        } else if (!t.note.empty()) {
            line = "stored " + t.name + " " + shape_text(t.shape) + " as " + t.stored_as;
        } else {
            continue;
        }
        if (t.output_name != t.name) line += " (written as " + t.output_name + ")";
        if (!t.note.empty()) line += " — " + t.note;
        std::cout << line << "\n";
    }
    std::cout << "wrote " << r.output.string() << " (" << io::convert_target_name(r.target);
    if (!r.gguf_architecture.empty()) std::cout << ", architecture " << r.gguf_architecture;
    std::cout << "): " << r.tensors.size() << " tensors, " << r.packed << " packed";
    if (r.quantized) std::cout << " (" << r.quantized << " of them quantized)";
    if (r.stored_unpacked) std::cout << ", " << r.stored_unpacked << " left as floats that the layout could not pack";
    std::cout << "\n";
}

void run_convert(ConvertFlags f) {
    if (f.pack && f.unpack) throw CLI::ValidationError("--pack", "--pack and --unpack exclude each other");
    // -o OUT as every command names its output; `convert IN OUT` as well.
    if (!f.output_option.empty() && !f.output.empty() && f.output_option != f.output)
        throw CLI::ValidationError("-o", "two outputs named: " + f.output + " and " + f.output_option);
    if (f.output.empty()) f.output = f.output_option;
    if (f.output.empty()) throw CLI::ValidationError("-o", "name the output: bitfsck convert IN -o OUT");
    io::ConvertOptions options;
    options.target = pick_target(f);
    options.unpack = f.unpack;
    options.quantize = f.quantize;
    options.gguf_architecture = f.arch;
    const io::Checkpoint c = io::Checkpoint::open(f.input, open_options(f.i2s_layout));
    ProgressLine progress("convert");
    options.progress = progress.callback();
    const io::ConvertReport report = io::convert_checkpoint(c, f.output, options);
    progress.finish();
    if (f.json) {
        std::cout << io::to_json(report).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
        return;
    }
    if (!quiet())
        for (const auto& n : report.notes) std::cerr << "note: " << n << "\n";
    print_report(report);
    if (report.stored_unpacked) print_warning(std::to_string(report.stored_unpacked) + " ternary tensor(s) stored as floats (see above)");
}

}  // namespace

void add_convert_subcommand(CLI::App& app) {
    auto flags = std::make_shared<ConvertFlags>();
    auto* sub = app.add_subcommand("convert", "Convert between .pt, safetensors, packed ternary layouts, GGUF and .bit2");
    sub->add_option("input", flags->input, "Checkpoint to read (any format bitfsck reads; a sharded index.json or its folder)")
        ->required();
    sub->add_option("output", flags->output, "File to write (never the input); a folder for a sharded input written as pt or safetensors");
    sub->add_option("-o,--output", flags->output_option, "The same as OUT: the file (or folder) to write");
    sub->add_flag("--json", flags->json, "Print the conversion report as JSON");
    sub->add_option("--to", flags->to, "Output format: pt, safetensors, i2s-pt, hf-packed, gguf-tq2_0, gguf-tq1_0, bit2 (default: from the extension)");
    sub->add_flag("--pack", flags->pack, "Pack ternary weights (.pt → i2s layout, .safetensors → Hugging Face layout)");
    sub->add_flag("--unpack", flags->unpack, "Store every tensor as floats (code × scale), even in .gguf / .bit2");
    sub->add_flag("--quantize", flags->quantize, "Ternarise non-ternary weights with the absmean quantizer when packing (lossy; the loss is reported)");
    sub->add_option("--arch", flags->arch, "GGUF general.architecture (default: bitnet when the model has BitNet's sub-norms, else llama)");
    add_i2s_layout_flag(*sub, flags->i2s_layout);
    sub->footer(
        "Examples:\n  bitfsck convert model.pt -o model.gguf --quantize\n  bitfsck convert packed.pt plain.safetensors\n"
        "  bitfsck convert model.safetensors model.bit2\n  bitfsck convert release/ converted/ --to safetensors   # sharded in, sharded out\n"
        "GGUF outputs use llama.cpp's tensor names (blk.N.attn_q, token_embd, ...) and keep embeddings and the output head in\n"
        "F16 and norms in F32, as llama.cpp's converters do.\n"
        "Exit codes: 0 written, 1 bad arguments or a refused conversion, 2 unreadable input.");
    sub->callback([flags] {
        run_reporting_errors([&] { run_convert(*flags); });
    });
}

}  // namespace bitfsck::cli
