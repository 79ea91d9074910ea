// bitfsck generate CKPT --prompt TEXT: decode with the KV cache and check the output for degeneration.
#ifdef BITFSCK_HAVE_MODEL
#include <iostream>
#include <memory>

#include "bitfsck/model/generate.hpp"
#include "model_flags.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

struct GenerateFlags {
    std::string input, prompt, tokenizer;
    std::int64_t max_new_tokens = 64, top_k = 0;
    double temperature = 0, top_p = 1.0;
    std::uint64_t seed = 0;
    bool no_stop = false, bos = false, no_bos = false, json = false;
};

void run(const GenerateFlags& f, const ModelFlags& mf) {
    if (f.bos && f.no_bos) throw CLI::ValidationError("generate", "--bos and --no-bos exclude each other");
    model::GenerateOptions o;
    o.load = mf.load_options();
    o.prompt = f.prompt;
    if (!f.tokenizer.empty()) o.tokenizer = f.tokenizer;
    o.max_new_tokens = f.max_new_tokens;
    o.temperature = f.temperature, o.top_k = f.top_k, o.top_p = f.top_p, o.seed = f.seed;
    o.stop_at_eos = !f.no_stop;
    if (f.bos) o.bos = true;
    if (f.no_bos) o.bos = false;
    try {
        io::OpenOptions open;
        open.pickle.trusted_globals.insert(mf.trusted.begin(), mf.trusted.end());
        io::Checkpoint ck = io::Checkpoint::open(f.input, open);
        if (!ck.findings().empty()) {
            print_warning(f.input + ": the pickle references " + ck.findings().front().global + " (see `bitfsck scan`)");
            set_exit_code(kSecurity);
        }
        ProgressLine progress("generate");
        o.progress = progress.callback();
        auto r = model::run_generate(ck, o);
        progress.finish();
        const auto& d = r.degeneration;
        if (d.broken) set_exit_code(kCollapsed);
        else if (d.degenerate) set_exit_code(kDegraded);
        if (f.json) {
            std::cout << model::to_json(r).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
            return;
        }
        std::cout << r.prompt_text << r.text << "\n";
        std::cerr << "bitfsck: " << r.generated.size() << " tokens (" << (r.greedy ? "greedy" : "sampled") << ", " << r.tokenizer
                  << " tokenizer) at " << static_cast<long>(r.tokens_per_second) << " tokens/s on " << r.device
                  << (r.stopped_at_eos ? ", stopped at EOS" : "") << "\n";
        if (d.reasons.empty()) std::cerr << "degeneration check: " << green("ok") << "\n";
        for (const auto& reason : d.reasons) std::cerr << "degeneration check: " << (d.broken ? red("BROKEN") : yellow("DEGENERATE")) << " " << reason << "\n";
    } catch (const Error& e) {
        report(e);  // the one mapping of error kinds to exit codes (Ctrl-C: 130)
    }
}

}  // namespace

void add_generate_subcommand(CLI::App& app) {
    auto f = std::make_shared<GenerateFlags>();
    auto mf = std::make_shared<ModelFlags>();
    auto* sub = app.add_subcommand("generate", "Generate text with the KV cache and check the output for degeneration");
    sub->add_option("input", f->input, "Checkpoint file")->required()->check(CLI::ExistingFile);
    sub->add_option("--prompt", f->prompt, "Prompt text (without --tokenizer: bytes for a 256-vocabulary model, else ids \"1 2 3\")");
    sub->add_option("--tokenizer", f->tokenizer, "SentencePiece tokenizer.model")->check(CLI::ExistingFile);
    sub->add_option("--max-new-tokens", f->max_new_tokens, "Tokens to generate")->capture_default_str();
    sub->add_option("--temperature", f->temperature, "0: greedy; else sample from softmax(logits/T)")->capture_default_str();
    sub->add_option("--top-k", f->top_k, "Sample among the k most likely tokens (0: all)");
    sub->add_option("--top-p", f->top_p, "Nucleus sampling mass")->capture_default_str();
    sub->add_option("--seed", f->seed, "Sampling seed (mt19937_64)")->capture_default_str();
    sub->add_flag("--no-stop", f->no_stop, "Do not stop at the EOS token");
    sub->add_flag("--bos", f->bos, "Prepend BOS (default: with a SentencePiece tokenizer when the model has one)");
    sub->add_flag("--no-bos", f->no_bos, "Never prepend BOS");
    sub->add_flag("--json", f->json, "Print the result as JSON on stdout");
    add_model_flags(*sub, mf);
    sub->footer(
        "Example:\n  bitfsck generate run/step_000350.pt --prompt 'def ' --max-new-tokens 80\n"
        "  bitfsck generate model.pt --tokenizer tokenizer.model --prompt 'Once upon a time' --temperature 0.8 --seed 1\n"
        "Exit codes: 0 ok, 2 unreadable or unrunnable checkpoint, 3 pickle security findings,\n"
        "4 degenerate output (a token or n-gram repeated), 5 broken (NaN/Inf or all-same logits).");
    sub->callback([f, mf] { run(*f, *mf); });
}

}  // namespace bitfsck::cli
#endif
