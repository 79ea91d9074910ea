// bitfsck finetune CKPT -o OUT.pt --tokens TRAIN: polarized fine-tuning (model/finetune.hpp).
#ifdef BITFSCK_HAVE_MODEL
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <set>
#include <iostream>
#include <memory>

#include "bitfsck/model/finetune.hpp"
#include "bitfsck/repair/align.hpp"
#include "model_flags.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

struct FinetuneFlags {
    std::string input, output, tokens, val_tokens, token_dtype = "u16", teacher, like, optimizer = "adamw", schedule = "cosine";
    std::string train = "mlp,attn,norm,embed", precision = "fp32";
    std::string options_file;                 // --options
    std::vector<std::string> flags_given;     // training flags on the command line (refused with --options)
    bool device_given = false;
    double val_frac = 0.05, kd_weight = 0.5, kd_temp = 2.0, clip = 1.0, min_lr_frac = 0.1;
    std::optional<double> lr_other;
    std::int64_t val_windows = 0, steps = 100, batch = 8, seq_len = 256, grad_accum = 1, warmup = 0, save_every = 0, eval_every = 0;
    std::uint64_t seed = 1337;
    std::vector<std::string> regs;
    std::optional<std::int64_t> resume_steps;
    bool resume = false, keep_optimizer_state = false, json = false, no_compare_run = false;
    model::OptimizerOptions opt;
};

std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        const auto end = s.find(',', start);
        std::string part = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (!part.empty()) out.push_back(part);
        if (end == std::string::npos) break;
        start = end + 1;
    }
    return out;
}


void resolve(model::FinetuneOptions& o) {
    if (o.regularizers.empty()) return;
    io::OpenOptions open;
    open.pickle.trusted_globals.insert(o.trusted_globals.begin(), o.trusted_globals.end());
    io::Checkpoint input = io::Checkpoint::open(o.input, open);
    std::optional<io::Checkpoint> like;
    if (!o.like.empty()) like.emplace(io::Checkpoint::open(o.like, open));
    model::resolve_regularizers(o.regularizers, input, like ? &*like : nullptr, repair::unit_three_peak_quantile);
}

void print_result(const model::FinetuneResult& r, const model::FinetuneOptions& o) {
    char line[1024];
    std::cout << bold(r.output.string()) << (r.stopped_early ? "  (stopped early)" : "") << "\n";
    std::snprintf(line, sizeof line, "%lld steps of %lld × %lld tokens, %.0f tokens/s on %s", static_cast<long long>(r.steps_done),
                  static_cast<long long>(o.batch * o.grad_accum * o.dist.world_size), static_cast<long long>(o.seq_len), r.tokens_per_second,
                  o.load.device.c_str());
    std::cout << line << "\n";
    if (r.val_loss_before && r.val_loss_after) {
        std::snprintf(line, sizeof line, "validation loss %.4f → %.4f nats/token", *r.val_loss_before, *r.val_loss_after);
        std::cout << line << "\n";
    }
    if (const model::RunCheckpointLoss* best = model::best_in_run(r)) {
        const auto& latest = r.run_checkpoints.back();
        const auto name = [](const std::string& f) { return std::filesystem::path(f).filename().string(); };
        std::snprintf(line, sizeof line, "the result vs the run's own checkpoints (the same %s windows): %.4f vs latest %s %.4f, best %s %.4f",
                      o.val_tokens.empty() ? "held-out" : "validation", *r.result_val_loss, name(latest.file).c_str(), latest.val_loss,
                      name(best->file).c_str(), best->val_loss);
        std::cout << line << "\n";
        std::cout << (*r.result_val_loss < best->val_loss ? green("beats every checkpoint of the run")
                                                          : yellow("does not beat the run's best checkpoint: the cure costs prediction quality"))
                  << "\n";
    }
    for (const auto& n : r.notes) std::cout << "note: " << n << "\n";
    std::cout << "metrics: " << r.metrics.string() << "\nstate:   " << r.state.string() << " (resume with --resume)\n";
}

model::FinetuneOptions options_from_file(const FinetuneFlags& f, const ModelFlags& mf) {
    if (!f.flags_given.empty())
        throw model::ModelUsageError("--options " + f.options_file + " gives the run; " + f.flags_given.front() +
                              " cannot be added to it (edit the document instead)");
    std::ifstream in(f.options_file);
    if (!in) throw io::FileError(f.options_file + ": cannot open");
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded()) throw model::ModelUsageError(f.options_file + ": not JSON");
    model::FinetuneOptions o = model::finetune_options_from_json(j, f.options_file);
    if (!f.input.empty()) o.input = f.input;
    if (!f.output.empty()) o.output = f.output;
    if (f.device_given) o.load.device = mf.device;
    if (mf.threads > 0) o.load.threads = mf.threads;
    if (o.input.empty() || o.output.empty() || o.tokens.empty())
        throw model::ModelUsageError(f.options_file + ": needs \"input\", \"output\" and \"tokens\" (or CKPT and -o on the command line)");
    return o;
}

void run(const FinetuneFlags& f, const ModelFlags& mf) {
    model::FinetuneOptions o;
    if (!f.options_file.empty()) {
        o = options_from_file(f, mf);
    } else if (f.resume) {
        if (f.output.empty()) throw model::ModelUsageError("--resume needs -o OUT (the run to continue)");
        o = model::options_for_resume(f.output);
        if (f.resume_steps) o.steps = *f.resume_steps;
    } else {
        if (f.input.empty() || f.tokens.empty() || f.output.empty())
            throw model::ModelUsageError("finetune needs CKPT, -o OUT and --tokens (or --options FILE, or --resume -o OUT)");
        o.input = f.input;
        o.output = f.output;
        o.load = mf.load_options();
        o.trusted_globals = mf.trusted;
        o.tokens = f.tokens;
        o.val_tokens = f.val_tokens;
        o.token_dtype = model::parse_token_dtype(f.token_dtype);
        o.val_frac = f.val_frac;
        o.val_windows = f.val_windows;
        o.steps = f.steps;
        o.batch = f.batch;
        o.seq_len = f.seq_len;
        o.grad_accum = f.grad_accum;
        o.seed = f.seed;
        o.train_groups = split_commas(f.train);
        o.optimizer = f.opt;
        o.optimizer.kind = model::parse_optimizer(f.optimizer);
        o.optimizer.lr_other = f.lr_other.value_or(f.opt.lr);
        o.schedule.kind = model::parse_schedule(f.schedule);
        o.schedule.warmup = f.warmup;
        o.schedule.min_lr_frac = f.min_lr_frac;
        o.clip = f.clip;
        for (const auto& spec : f.regs) o.regularizers.push_back(model::parse_regularizer(spec));
        o.like = f.like;
        o.teacher = f.teacher;
        o.kd_weight = f.kd_weight;
        o.kd_temp = f.kd_temp;
        o.precision = f.precision;
        o.save_every = f.save_every;
        o.eval_every = f.eval_every;
        o.drop_optimizer_state = !f.keep_optimizer_state;
        o.compare_run = !f.no_compare_run;
    }
    o.dist = model::distributed_env_from_environment();
    resolve(o);

    // Every rank stops on its own Ctrl-C; only rank 0 draws.
    std::unique_ptr<ProgressLine> progress;
    if (o.dist.rank == 0 && !f.json) progress = std::make_unique<ProgressLine>("finetune");
    o.progress = progress ? progress->callback() : stop_when(interrupt_flag());
    const bool rank0 = o.dist.rank == 0;
    const model::FinetuneResult r = model::run_finetune(o);
    if (progress) progress->finish();
    if (!rank0) return;
    if (f.json) {
        std::cout << model::to_json(r).dump(2) << "\n";
    } else {
        print_result(r, o);
    }
    // Ctrl-C saved what was reached (resume with --resume), but the run did not finish.
    if (r.stopped_early) set_exit_code(kInterrupted);
}

}  // namespace

void add_finetune_subcommand(CLI::App& app) {
    auto f = std::make_shared<FinetuneFlags>();
    auto mf = std::make_shared<ModelFlags>();
    auto* sub = app.add_subcommand("finetune", "Fine-tune a ternary checkpoint (STE training with anti-collapse regularizers)");
    sub->add_option("input", f->input, "Checkpoint to start from (the last healthy one, typically)")->check(CLI::ExistingFile);
    sub->add_option("-o,--output", f->output, "Output checkpoint (same format and keys as the input)");
    sub->add_option("--options", f->options_file,
                    "The run as one JSON document (the keys of OUT.state.json's \"options\"; missing keys keep their defaults); "
                    "CKPT, -o, --device and --threads may override it, other training flags may not")
        ->check(CLI::ExistingFile);
    sub->add_option("--tokens", f->tokens, "Training token ids: raw little-endian (--token-dtype) or .npy")->check(CLI::ExistingFile);
    sub->add_option("--val-tokens", f->val_tokens, "Validation token ids (default: --val-frac of the end of --tokens, never trained on)")
        ->check(CLI::ExistingFile);
    sub->add_option("--val-frac", f->val_frac, "Fraction of --tokens held out for validation when --val-tokens is not given")->capture_default_str();
    sub->add_option("--val-windows", f->val_windows, "Evaluate at most this many validation windows (0: all)");
    sub->add_option("--token-dtype", f->token_dtype, "Raw token width: u16 or u32")->check(CLI::IsMember({"u16", "u32"}))->capture_default_str();
    sub->add_option("--steps", f->steps, "Optimizer steps in total")->capture_default_str();
    sub->add_option("--batch", f->batch, "Windows per micro-batch (per process)")->capture_default_str();
    sub->add_option("--seq-len", f->seq_len, "Tokens per window")->capture_default_str();
    sub->add_option("--grad-accum", f->grad_accum, "Micro-batches per optimizer step")->capture_default_str();
    sub->add_option("--seed", f->seed, "Seed of the window sampler")->capture_default_str();
    sub->add_option("--train", f->train, "What may change: a list of mlp, attn, norm, embed")->capture_default_str();
    sub->add_option("--optimizer", f->optimizer, "adamw, sgd, or muon (Muon for the ternary matrices, AdamW for the rest)")
        ->check(CLI::IsMember({"adamw", "sgd", "muon"}))->capture_default_str();
    sub->add_option("--lr", f->opt.lr, "Peak learning rate of the ternary matrices")->capture_default_str();
    sub->add_option("--lr-other", f->lr_other, "Peak learning rate of embeddings, norms and biases (default: --lr)");
    sub->add_option("--beta1", f->opt.beta1, "AdamW β1")->capture_default_str();
    sub->add_option("--beta2", f->opt.beta2, "AdamW β2")->capture_default_str();
    sub->add_option("--eps", f->opt.eps, "AdamW ε")->capture_default_str();
    sub->add_option("--weight-decay", f->opt.weight_decay_other,
                    "AdamW decoupled decay of embeddings and norms (matrices: none; see --reg decay)")->capture_default_str();
    sub->add_option("--momentum", f->opt.momentum, "SGD momentum")->capture_default_str();
    sub->add_option("--muon-momentum", f->opt.muon_momentum, "Muon's Nesterov momentum")->capture_default_str();
    sub->add_option("--schedule", f->schedule, "cosine, linear or constant after the warm-up")
        ->check(CLI::IsMember({"cosine", "linear", "constant"}))->capture_default_str();
    sub->add_option("--warmup", f->warmup, "Warm-up steps (linear from lr/warmup)")->capture_default_str();
    sub->add_option("--min-lr-frac", f->min_lr_frac, "Where cosine/linear decay ends, as a fraction of the peak")->capture_default_str();
    sub->add_option("--clip", f->clip, "Clip the global gradient norm to this (0: no clipping)")->capture_default_str();
    sub->add_option("--reg", f->regs,
                    "Regularizer NAME[:key=value,...] (repeatable): decay, double-well, three-peaks, polarize, wasserstein; "
                    "keys lambda, coupled|decoupled, strength, target=<S>|like|own, width, zeros, layers, roles, match (lists with '|')");
    sub->add_option("--like", f->like, "Healthy reference checkpoint for target=like (absmean per layer-role)")->check(CLI::ExistingFile);
    sub->add_option("--teacher", f->teacher, "Distil from this checkpoint (KL between softened distributions)")->check(CLI::ExistingFile);
    sub->add_option("--kd-weight", f->kd_weight, "Weight A of the distillation term: (1−A)·CE + A·T²·KL")->capture_default_str();
    sub->add_option("--kd-temp", f->kd_temp, "Distillation temperature T")->capture_default_str();
    sub->add_option("--precision", f->precision, "fp32, or bf16 (autocast, CUDA only)")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
    sub->add_option("--save-every", f->save_every, "Save every N steps (0: only at the end)");
    sub->add_option("--eval-every", f->eval_every, "Validation loss every N steps (0: at the start and at each save)");
    sub->add_flag("--keep-optimizer-state", f->keep_optimizer_state, "Carry the input's own optimizer state into OUT (default: dropped)");
    sub->add_flag("--resume", f->resume, "Continue the run whose latest save is -o OUT (its options come from OUT.state.json)");
    sub->add_option("--resume-steps", f->resume_steps, "With --resume: the new total number of steps");
    sub->add_flag("--no-compare-run", f->no_compare_run,
                  "Do not measure the input folder's other checkpoints on the same validation windows after training");
    sub->add_flag("--json", f->json, "Print the result as JSON on stdout");
    add_model_flags(*sub, mf);
    sub->footer(
        "Example:\n"
        "  bitfsck finetune run/step_000050.pt -o cured.pt --tokens run/train.bin --val-tokens run/val.bin \\\n"
        "      --seq-len 64 --batch 16 --steps 200 --lr 1e-3 --reg double-well:lambda=1e-3,target=like,roles=mlp --like run/step_000050.pt\n"
        "  bitfsck finetune --options stage.json          (the same run as one document; keys as in OUT.state.json)\n"
        "Writes OUT, OUT.metrics.jsonl (one JSON line per step), OUT.state.pt and OUT.state.json (for --resume).\n"
        "Ctrl-C saves what was reached and exits; a second Ctrl-C exits at once.\n"
        "Several processes: torchrun --nproc-per-node 2 --no-python bitfsck finetune ... (or srun); gradients are\n"
        "averaged over c10d (Gloo on CPU), each rank draws its own windows, rank 0 writes.\n"
        "Exit codes: 0 ok, 1 bad flags or options, 2 unreadable input.");
    sub->callback([f, mf, sub] {
        // Which flags the user typed: with --options only the overrides above are accepted.
        static const std::set<std::string> overrides = {"input", "--output", "--options", "--json", "--device", "--threads", "--trust"};
        f->flags_given.clear();
        for (const CLI::Option* opt : sub->get_options())
            if (opt->count() > 0 && !overrides.count(opt->get_name())) f->flags_given.push_back(opt->get_name());
        f->device_given = sub->count("--device") > 0;
        run_reporting_errors([&] { run(*f, *mf); });
    });
}

}  // namespace bitfsck::cli
#endif
