#pragma once
// Flags shared by the subcommands that run a model (induction, generate, perplexity): device,
// threads, config file and per-key overrides. Header-only so it needs no CMake change.
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/model/model.hpp"

namespace bitfsck::cli {

struct ModelFlags {
    std::string device = "cpu";
    int threads = 0;
    std::string config_file;
    std::optional<std::int64_t> heads, kv_heads, head_dim;
    std::optional<double> rope_theta, attn_softcap, logit_softcap, norm_eps;
    std::string weight_quant, act_eps;
    bool no_quant = false;
    bool no_checkpoint_config = false;
    std::vector<std::string> trusted;

    model::LoadOptions load_options() const {
        model::LoadOptions o;
        o.device = device;
        o.threads = threads;
        if (!config_file.empty()) o.config.json_file = config_file;
        o.config.use_checkpoint_config = !no_checkpoint_config;
        auto& j = o.config.overrides;
        if (heads) j["num_heads"] = *heads;
        if (kv_heads) j["num_kv_heads"] = *kv_heads;
        if (head_dim) j["head_dim"] = *head_dim;
        if (rope_theta) j["rope_theta"] = *rope_theta;
        if (attn_softcap) j["attn_softcap"] = *attn_softcap;
        if (logit_softcap) j["logit_softcap"] = *logit_softcap;
        if (norm_eps) j["norm_eps"] = *norm_eps;
        if (!weight_quant.empty()) j["weight_quant"] = weight_quant;
        if (!act_eps.empty()) j["act_eps"] = act_eps;
        if (no_quant) j["quantize"] = false;
        return o;
    }
};

inline void add_model_flags(CLI::App& sub, const std::shared_ptr<ModelFlags>& f) {
    sub.add_option("--device", f->device, "cpu, cuda or cuda:N (CUDA where this LibTorch has it)")->capture_default_str();
    sub.add_option("-j,--threads", f->threads, "CPU threads for LibTorch (0: its default)");
    sub.add_option("--config", f->config_file, "Model config JSON (our keys or a Hugging Face config.json); overrides the checkpoint's")
        ->check(CLI::ExistingFile);
    sub.add_flag("--no-checkpoint-config", f->no_checkpoint_config, "Ignore a config stored inside the checkpoint");
    sub.add_option("--heads", f->heads, "Number of attention heads");
    sub.add_option("--kv-heads", f->kv_heads, "Number of key/value heads (grouped-query attention)");
    sub.add_option("--head-dim", f->head_dim, "Head dimension");
    sub.add_option("--rope-theta", f->rope_theta, "RoPE base (student default 1e6)");
    sub.add_option("--attn-softcap", f->attn_softcap, "Attention soft-cap c in c·tanh(x/c); 0 disables (student default 50)");
    sub.add_option("--logit-softcap", f->logit_softcap, "Final logit soft-cap; 0 disables (student default 30)");
    sub.add_option("--norm-eps", f->norm_eps, "Norm epsilon");
    sub.add_option("--weight-quant", f->weight_quant, "Absmean scale per 'tensor' (default) or per output 'channel'")
        ->check(CLI::IsMember({"tensor", "channel"}));
    sub.add_option("--act-eps", f->act_eps, "Activation scale: 'add' (max|x|+1e-8, Distillix) or 'clamp' (max(max|x|,1e-5), HF)")
        ->check(CLI::IsMember({"add", "clamp"}));
    sub.add_flag("--no-quant", f->no_quant, "Run the same weights unquantized (no ternary weights, no int8 activations)");
    sub.add_option("--trust", f->trusted, "A module.Class you trust in the checkpoint's pickle");
}

}  // namespace bitfsck::cli
