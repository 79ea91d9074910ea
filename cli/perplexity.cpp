// bitfsck perplexity CKPT --tokens FILE: mean next-token loss on real data.
#ifdef BITFSCK_HAVE_MODEL
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "bitfsck/model/perplexity.hpp"
#include "model_flags.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

struct PerplexityFlags {
    std::string input, tokens, token_dtype = "u16";
    std::int64_t seq_len = 0, batch = 8, max_windows = 0;
    bool json = false, per_window = false;
};

void run(const PerplexityFlags& f, const ModelFlags& mf) {
    model::PerplexityOptions o;
    o.load = mf.load_options();
    o.tokens_file = f.tokens;
    o.token_dtype = model::parse_token_dtype(f.token_dtype);
    o.batch = f.batch;
    o.max_windows = f.max_windows;
    o.per_window = f.per_window;
    try {
        io::OpenOptions open;
        open.pickle.trusted_globals.insert(mf.trusted.begin(), mf.trusted.end());
        io::Checkpoint ck = io::Checkpoint::open(f.input, open);
        if (!ck.findings().empty()) {
            print_warning(f.input + ": the pickle references " + ck.findings().front().global + " (see `bitfsck scan`)");
            set_exit_code(kSecurity);
        }
        auto model = model::Model::load(ck, o.load);
        // Default window: the learned position table when there is one, else 256.
        o.seq_len = f.seq_len > 0 ? f.seq_len : model.config().max_positions ? std::min<std::int64_t>(model.config().max_positions, 1024) : 256;
        ProgressLine progress("perplexity");
        o.progress = progress.callback();  // false after Ctrl-C: Cancelled, exit 130
        auto r = model::run_perplexity(model, f.input, o);
        progress.finish();
        if (!std::isfinite(r.loss)) set_exit_code(kCollapsed);
        if (f.json) {
            std::cout << model::to_json(r).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
            return;
        }
        char line[256];
        std::snprintf(line, sizeof line, "loss %.4f nats/token, perplexity %.3f, %.4f bits/token", r.loss, r.perplexity, r.bits_per_token);
        std::cout << bold(r.file) << "  (" << model::layout_name(r.config.layout) << (r.config.quantize ? "" : ", unquantized") << ")\n"
                  << line << "\n"
                  << r.windows << " windows of " << r.seq_len << " tokens (" << r.targets << " targets) from " << r.tokens_file << ", "
                  << static_cast<long>(r.tokens_per_second) << " tokens/s on " << r.device << "\n";
    } catch (const Error& e) {
        report(e);  // the one mapping of error kinds to exit codes (Ctrl-C: 130)
    }
}

}  // namespace

void add_perplexity_subcommand(CLI::App& app) {
    auto f = std::make_shared<PerplexityFlags>();
    auto mf = std::make_shared<ModelFlags>();
    auto* sub = app.add_subcommand("perplexity", "Mean next-token loss and perplexity of a checkpoint on real tokens");
    sub->add_option("input", f->input, "Checkpoint file")->required()->check(CLI::ExistingFile);
    sub->add_option("--tokens", f->tokens, "Token ids: raw little-endian (--token-dtype) or .npy")->required()->check(CLI::ExistingFile);
    sub->add_option("--token-dtype", f->token_dtype, "Raw token width: u16 (nanoGPT) or u32")->check(CLI::IsMember({"u16", "u32"}))->capture_default_str();
    sub->add_option("--seq-len", f->seq_len, "Window length (default: the learned position table, else 256)");
    sub->add_option("--batch", f->batch, "Windows per forward pass")->capture_default_str();
    sub->add_option("--max-windows", f->max_windows, "Stop after this many windows (0: the whole file)");
    sub->add_flag("--json", f->json, "Print the result as JSON on stdout");
    sub->add_flag("--per-window", f->per_window, "With --json: also each window's mean loss (window_losses), for paired comparisons");
    add_model_flags(*sub, mf);
    sub->footer(
        "Example:\n  bitfsck perplexity run/step_000350.pt --tokens run/val.bin --seq-len 64\n"
        "Windows start at 0, L, 2L, ... (L + 1 tokens each); every target counts equally.\n"
        "Exit codes: 0 ok, 2 unreadable or unrunnable checkpoint, 3 pickle security findings, 5 non-finite loss.");
    sub->callback([f, mf] { run(*f, *mf); });
}

}  // namespace bitfsck::cli
#endif
