// bitfsck induction CKPT...: per-layer, per-head induction metrics from real forward passes.
#ifdef BITFSCK_HAVE_MODEL
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/model/induction.hpp"
#include "model_flags.hpp"
#include "subcommands.hpp"
#include "table.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

namespace fs = std::filesystem;

struct InductionFlags {
    std::vector<std::string> inputs;
    std::string tokens;
    std::string token_dtype = "u16";
    std::int64_t batch = 8, seq_len = 64, batches = 8;
    std::uint64_t seed = 1234;
    bool bos = false, no_bos = false;
    double threshold = 0.05;
    int top = 5;
    bool json = false, sidecar = false;
    std::string out_dir, h5;
};

std::string fmt(const char* f, double v) {
    if (std::isnan(v)) return "-";
    char buf[48];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

std::string probe_line(const model::InductionReport& r) {
    std::string s = "probe: " + std::string(model::probe_name(r.probe)) + " (";
    if (r.probe == model::Probe::RepeatedRandom)
        s += std::to_string(r.batch) + " rows of " + std::to_string(r.seq_len) + " random tokens ×2, seed " + std::to_string(r.seed) +
             (r.bos ? ", BOS first" : ", no BOS");
    else
        s += std::to_string(r.windows) + " windows of " + std::to_string(r.seq_len) + " tokens from " + r.tokens_file + " (" +
             r.token_dtype + "), no BOS";
    s += "); " + std::to_string(r.eligible_positions) + " eligible positions, " + std::to_string(r.tokens) + " tokens at " +
         fmt("%.0f", r.tokens_per_second) + " tokens/s on " + r.device;
    return s;
}

void print_report(const model::InductionReport& r) {
    const auto& c = r.config;
    std::cout << bold(r.file) << "  (" << model::layout_name(c.layout) << ", " << c.num_layers << " layers × " << c.num_heads
              << " heads, hidden " << c.hidden_size << ", vocab " << c.vocab_size << (c.quantize ? "" : ", unquantized") << ")\n";
    std::cout << probe_line(r) << "\n";
    std::set<std::pair<std::int64_t, std::int64_t>> top;
    for (const auto& h : r.top)
        if (h.metrics.ipmr >= r.specialist_threshold) top.insert({h.layer, h.head});
    std::vector<std::string> headers{"IPMR"};
    for (std::int64_t h = 0; h < r.heads; ++h) headers.push_back("h" + std::to_string(h));
    Table t(headers);
    for (std::int64_t l = 0; l < r.layers; ++l) {
        std::vector<std::string> row{"layer " + std::to_string(l)};
        for (std::int64_t h = 0; h < r.heads; ++h) {
            double v = r.metrics[l][h].ipmr;
            std::string cell = fmt("%.3f", v);
            if (top.count({l, h})) cell = green(bold(cell));
            else if (v >= r.specialist_threshold) cell = yellow(cell);
            row.push_back(cell);
        }
        t.add(row);
    }
    std::cout << t.render();
    Table best({"top head", "IPMR", "induction", "prev-token", "dup-token"});
    for (const auto& h : r.top)
        best.add({"L" + std::to_string(h.layer) + ".H" + std::to_string(h.head), fmt("%.3f", h.metrics.ipmr), fmt("%.3f", h.metrics.induction),
                  fmt("%.3f", h.metrics.previous_token), fmt("%.3f", h.metrics.duplicate_token)});
    if (best.rows()) std::cout << best.render();
    std::cout << "specialist heads (IPMR >= " << fmt("%.3g", r.specialist_threshold) << "): " << r.specialists << " of "
              << r.layers * r.heads << "\n";
}

fs::path sidecar_path(const fs::path& input, const std::string& out_dir) {
    fs::path name = input.filename();
    name += ".induction.json";
    return out_dir.empty() ? input.parent_path() / name : fs::path(out_dir) / name;
}

void run(const InductionFlags& f, const ModelFlags& mf) {
    if (f.bos && f.no_bos) throw CLI::ValidationError("induction", "--bos and --no-bos exclude each other");
    model::InductionOptions o;
    o.load = mf.load_options();
    if (!f.tokens.empty()) o.tokens_file = f.tokens;
    o.token_dtype = model::parse_token_dtype(f.token_dtype);
    o.batch = f.batch, o.seq_len = f.seq_len, o.batches = f.batches, o.seed = f.seed;
    if (f.bos) o.bos = true;
    if (f.no_bos) o.bos = false;
    o.specialist_threshold = f.threshold;
    o.top = f.top;
    if (!f.out_dir.empty()) fs::create_directories(f.out_dir);
    std::vector<fs::path> inputs(f.inputs.begin(), f.inputs.end());
    if (!f.h5.empty()) io::ensure_not_an_input(f.h5, inputs);

    std::vector<model::InductionReport> reports;
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    for (const auto& in : inputs) {
        try {
            io::OpenOptions open;
            open.pickle.trusted_globals.insert(mf.trusted.begin(), mf.trusted.end());
            io::Checkpoint ck = io::Checkpoint::open(in, open);
            if (!ck.findings().empty()) {
                print_warning(in.string() + ": the pickle references " + ck.findings().front().global +
                              (ck.findings().size() > 1 ? " and " + std::to_string(ck.findings().size() - 1) + " more" : "") +
                              " (run `bitfsck scan` for details; --trust MODULE.CLASS to accept)");
                set_exit_code(kSecurity);
            }
            ProgressLine progress("induction");
            o.progress = progress.callback();  // false after Ctrl-C: the probe throws Cancelled (exit 130)
            auto r = model::run_induction(ck, o);
            progress.finish();
            auto j = model::to_json(r);
            if (f.sidecar) {
                fs::path out = sidecar_path(in, f.out_dir);
                io::ensure_not_an_input(out, {in});
                io::write_file_atomically(out, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
            }
            if (f.json) all.push_back(std::move(j));
            else {
                if (!reports.empty()) std::cout << "\n";
                print_report(r);
            }
            reports.push_back(std::move(r));
        } catch (const Cancelled&) {
            throw;  // Ctrl-C ends the whole command, not just this file
        } catch (const Error& e) {
            report(e);  // the one mapping of error kinds to exit codes
        }
    }
    if (!f.h5.empty() && !reports.empty()) model::write_induction_h5(f.h5, reports);
    if (f.json) std::cout << all.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

}  // namespace

void add_induction_subcommand(CLI::App& app) {
    auto f = std::make_shared<InductionFlags>();
    auto mf = std::make_shared<ModelFlags>();
    auto* sub = app.add_subcommand("induction", "Induction, previous-token and duplicate-token heads, from real forward passes");
    sub->add_option("inputs", f->inputs, "Checkpoint files")->required()->check(CLI::ExistingFile);
    sub->add_option("--tokens", f->tokens, "Probe on real data: raw little-endian token ids or a .npy file (else: repeated random tokens)")
        ->check(CLI::ExistingFile);
    sub->add_option("--token-dtype", f->token_dtype, "Raw token width: u16 (nanoGPT) or u32")->check(CLI::IsMember({"u16", "u32"}))->capture_default_str();
    sub->add_option("--batch", f->batch, "Rows per forward pass (random probe: rows in all)")->capture_default_str();
    sub->add_option("--seq-len", f->seq_len, "Random probe: tokens repeated twice; --tokens: window length")->capture_default_str();
    sub->add_option("--batches", f->batches, "--tokens: consecutive windows from the start of the file")->capture_default_str();
    sub->add_option("--seed", f->seed, "Random probe seed (mt19937_64)")->capture_default_str();
    sub->add_flag("--bos", f->bos, "Random probe: put BOS first (default: when the config names a bos_token_id)");
    sub->add_flag("--no-bos", f->no_bos, "Random probe: no BOS");
    sub->add_option("--threshold", f->threshold, "IPMR at or above which a head counts as a specialist")->capture_default_str();
    sub->add_option("--top", f->top, "How many top heads to list")->capture_default_str();
    sub->add_flag("--json", f->json, "Print the reports as a JSON array on stdout (schema: docs/induction.md)");
    sub->add_flag("--sidecar", f->sidecar, "Write <checkpoint>.induction.json next to each input (or into --out-dir)");
    sub->add_option("--out-dir", f->out_dir, "Folder for the sidecar files");
    sub->add_option("--h5", f->h5, "Write the per-head matrices to an HDF5 file (one group per checkpoint)");
    add_model_flags(*sub, mf);
    sub->footer(
        "Example:\n  bitfsck induction run/step_002000.pt\n"
        "  bitfsck induction --tokens run/val.bin --batches 16 --seq-len 256 --sidecar ckpt.pt\n"
        "IPMR: over positions t whose token occurred before (most recently at j, j+1 < t), the share where the head's\n"
        "argmax attention is j+1. Exit codes: 0 ok, 2 unreadable or unrunnable checkpoint, 3 pickle security findings.");
    sub->callback([f, mf] { run(*f, *mf); });
}

}  // namespace bitfsck::cli
#endif
