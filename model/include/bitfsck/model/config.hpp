#pragma once
// Model configuration: which layout a state dict has and the hyper-parameters of its forward pass.
// Resolved in order of precedence: command-line overrides > a JSON file > Hugging Face's
// config.json beside the weights > a config object stored in the checkpoint > what the tensor
// shapes say > defaults of the layout. No LibTorch here.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"

namespace bitfsck::model {

// A checkpoint that cannot be turned into a model: a missing tensor, a shape that contradicts the
// config, a config value out of range. The message names the file and the tensor or key.
class ModelError : public Error {
public:
    explicit ModelError(const std::string& message, ErrorKind kind = ErrorKind::Model) : Error(message, kind) {}
};

// The request itself is wrong (a flag's value, an output name, a window longer than the data): the
// CLI's usage exit code, not "cannot be made into a model".
class ModelUsageError : public ModelError {
public:
    explicit ModelUsageError(const std::string& message) : ModelError(message, ErrorKind::Usage) {}
};

enum class Layout : std::uint8_t {
    LlamaStudent,  // Distillix StudentLLM: layers.N.self_attn.{q,k,v,o}_proj, q_norm/k_norm, SwiGLU
    HfBitNet,      // Hugging Face BitNetForCausalLM: model.layers.N..., packed uint8 + weight_scale, sub-norms, relu²
    Gpt2,          // GPT-2 with BitLinear: h.N.attn.c_attn (Conv1D, stored [in, out]), learned positions, LayerNorm
};
std::string_view layout_name(Layout l);

// How BitLinear quantizes its weights at load time.
enum class WeightQuant : std::uint8_t { PerTensor, PerChannel };
// The epsilon of the per-token activation scale: Distillix adds 1e-8 to max|x| (s = max|x| + 1e-8,
// x/s·127), Hugging Face and bitnet_reference.py clamp it (127 / max(max|x|, 1e-5)). They differ only
// for near-zero rows, but an exact reproduction needs the right one.
enum class ActEps : std::uint8_t { Add, Clamp };

struct ModelConfig {
    Layout layout = Layout::LlamaStudent;
    std::string prefix;  // key prefix before the layout's names ("", "model.", "transformer.", "module.")

    std::int64_t vocab_size = 0;
    std::int64_t hidden_size = 0;
    std::int64_t num_layers = 0;
    std::int64_t num_heads = 0;
    std::int64_t num_kv_heads = 0;
    std::int64_t head_dim = 0;
    std::int64_t intermediate_size = 0;
    std::int64_t max_positions = 0;  // learned position table size (GPT-2); 0: no limit (RoPE)

    double rope_theta = 1e6;
    double norm_eps = 1e-6;
    double attn_softcap = 50.0;   // c·tanh(x/c) on attention scores; 0 disables
    double logit_softcap = 30.0;  // on the final logits; 0 disables
    bool tied_lm_head = true;

    bool quantize = true;  // false: the same weights, unquantized, and no activation quantization
    WeightQuant weight_quant = WeightQuant::PerTensor;
    ActEps act_eps = ActEps::Add;

    std::optional<std::int64_t> bos_token_id;
    std::optional<std::int64_t> eos_token_id;

    // Where the explicit values came from, for reports ("checkpoint:config", "file:cfg.json", "flags").
    std::vector<std::string> sources;
};

struct ConfigSources {
    std::optional<std::filesystem::path> json_file;  // keys as in ModelConfig or Hugging Face config.json
    nlohmann::json overrides = nlohmann::json::object();  // from flags, same keys; applied last
    bool use_checkpoint_config = true;
};

// Detects the layout from the tensor names, infers what the shapes determine, applies the config
// sources and checks every tensor the forward pass will use against the result. Throws ModelError.
ModelConfig resolve_config(const io::Checkpoint& checkpoint, const ConfigSources& sources = {});

// The config object stored in the checkpoint as JSON (scalars only), if one was found: a dict or an
// opaque object's state under "config", "model_config", "model_args", "args", "hparams", ...
// A nested "model" dict is merged over its parent. Returns null when there is none.
nlohmann::json checkpoint_config_json(const io::Checkpoint& checkpoint);

// Applies recognised keys (with their common aliases: n_embd, num_attention_heads, ...) to cfg.
// Unknown keys are ignored; a recognised key with a value of the wrong type throws ModelError
// naming `origin` and the key.
void apply_config_json(ModelConfig& cfg, const nlohmann::json& j, const std::string& origin);

nlohmann::ordered_json config_to_json(const ModelConfig& cfg);

// Names of the tensors of one layer or of the whole model, as stored (prefix included).
std::string tensor_name(const ModelConfig& cfg, const std::string& local);

// Parameter count of the model the config describes (embeddings and norms included).
std::int64_t parameter_count(const ModelConfig& cfg);

}  // namespace bitfsck::model
