// Layout detection, config resolution and the shape checks that turn a state dict into a model.
#include "bitfsck/model/config.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace bitfsck::model {
namespace {

using Keys = std::set<std::string>;

std::string shape_str(const std::vector<std::int64_t>& s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

bool ends_with_component(const std::string& name, const std::string& suffix) {
    if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
    return name.size() == suffix.size() || name[name.size() - suffix.size() - 1] == '.';
}

// Pickled config values as JSON: scalars, strings, lists and nested dicts/objects, depth-limited
// because a pickle's memo can make cycles.
nlohmann::json value_to_json(const io::Value* v, int depth) {
    if (!v || depth > 6) return nullptr;
    switch (v->kind) {
        case io::ValueKind::Bool: return v->boolean;
        case io::ValueKind::Int: return v->integer;
        case io::ValueKind::Float: return v->real;
        case io::ValueKind::String: return v->text;
        case io::ValueKind::Tuple:
        case io::ValueKind::List: {
            nlohmann::json a = nlohmann::json::array();
            for (auto* it : v->items) a.push_back(value_to_json(it, depth + 1));
            return a;
        }
        case io::ValueKind::Dict: {
            nlohmann::json o = nlohmann::json::object();
            for (auto& [k, val] : v->entries)
                if (k && k->kind == io::ValueKind::String) o[k->text] = value_to_json(val, depth + 1);
            return o;
        }
        case io::ValueKind::Object: {
            // A dataclass or argparse.Namespace: its attributes are the BUILD state (a dict, or a
            // (dict, slots) tuple), or dict-style SETITEMS for OrderedDict subclasses.
            nlohmann::json o = nlohmann::json::object();
            const io::Value* st = v->state;
            if (st && st->kind == io::ValueKind::Tuple && !st->items.empty()) st = st->items[0];
            if (st && st->kind == io::ValueKind::Dict) o = value_to_json(st, depth + 1);
            for (auto& [k, val] : v->entries)
                if (k && k->kind == io::ValueKind::String) o[k->text] = value_to_json(val, depth + 1);
            return o;
        }
        default: return nullptr;
    }
}

const std::map<std::string, std::vector<std::string>>& aliases() {
    static const std::map<std::string, std::vector<std::string>> m = {
        {"vocab_size", {"vocab_size", "n_vocab", "vocab"}},
        {"hidden_size", {"hidden_size", "n_embd", "d_model", "dim", "hidden"}},
        {"num_layers", {"num_layers", "num_hidden_layers", "n_layer", "n_layers"}},
        {"num_heads", {"num_heads", "num_attention_heads", "n_head", "n_heads"}},
        {"num_kv_heads", {"num_kv_heads", "num_key_value_heads", "n_kv_head", "n_kv_heads"}},
        {"head_dim", {"head_dim"}},
        {"intermediate_size", {"intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size"}},
        {"max_positions", {"max_positions", "max_position_embeddings", "n_positions", "block_size"}},
        {"rope_theta", {"rope_theta", "rope_base", "rotary_base"}},
        {"norm_eps", {"norm_eps", "rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"}},
        {"attn_softcap", {"attn_softcap", "attn_logit_softcapping", "attention_softcap"}},
        {"logit_softcap", {"logit_softcap", "final_logit_softcapping"}},
        {"tied_lm_head", {"tied_lm_head", "tie_word_embeddings"}},
        {"quantize", {"quantize"}},
        {"weight_quant", {"weight_quant"}},
        {"act_eps", {"act_eps", "act_quant_eps"}},
        {"bos_token_id", {"bos_token_id"}},
        {"eos_token_id", {"eos_token_id"}},
    };
    return m;
}

void apply_json(ModelConfig& cfg, const nlohmann::json& j, const std::string& origin, Keys* set_keys) {
    if (!j.is_object()) throw ModelError(origin + ": the model config must be a JSON object");
    auto bad = [&](const std::string& key, const char* want) {
        return ModelError(origin + ": config key '" + key + "' must be " + want);
    };
    for (const auto& [field, names] : aliases()) {
        for (const auto& name : names) {
            auto it = j.find(name);
            if (it == j.end() || it->is_null()) continue;
            const auto& v = *it;
            auto as_int = [&]() -> std::int64_t {
                if (v.is_number_integer() || v.is_number_unsigned()) return v.get<std::int64_t>();
                if (v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<std::int64_t>(v.get<double>())))
                    return static_cast<std::int64_t>(v.get<double>());
                throw bad(name, "an integer");
            };
            auto as_num = [&]() -> double {
                if (!v.is_number()) throw bad(name, "a number");
                return v.get<double>();
            };
            auto as_bool = [&]() -> bool {
                if (!v.is_boolean()) throw bad(name, "true or false");
                return v.get<bool>();
            };
            if (field == "vocab_size") cfg.vocab_size = as_int();
            else if (field == "hidden_size") cfg.hidden_size = as_int();
            else if (field == "num_layers") cfg.num_layers = as_int();
            else if (field == "num_heads") cfg.num_heads = as_int();
            else if (field == "num_kv_heads") cfg.num_kv_heads = as_int();
            else if (field == "head_dim") cfg.head_dim = as_int();
            else if (field == "intermediate_size") cfg.intermediate_size = as_int();
            else if (field == "max_positions") cfg.max_positions = as_int();
            else if (field == "rope_theta") cfg.rope_theta = as_num();
            else if (field == "norm_eps") cfg.norm_eps = as_num();
            else if (field == "attn_softcap") cfg.attn_softcap = as_num();
            else if (field == "logit_softcap") cfg.logit_softcap = as_num();
            else if (field == "tied_lm_head") cfg.tied_lm_head = as_bool();
            else if (field == "quantize") cfg.quantize = as_bool();
            else if (field == "bos_token_id") cfg.bos_token_id = as_int();
            else if (field == "eos_token_id") {
                // Hugging Face allows a list of end tokens; the first is the one generation stops at.
                if (v.is_array() && !v.empty()) cfg.eos_token_id = v[0].get<std::int64_t>();
                else cfg.eos_token_id = as_int();
            } else if (field == "weight_quant") {
                if (!v.is_string() || (v != "tensor" && v != "channel")) throw bad(name, "\"tensor\" or \"channel\"");
                cfg.weight_quant = v == "tensor" ? WeightQuant::PerTensor : WeightQuant::PerChannel;
            } else if (field == "act_eps") {
                if (!v.is_string() || (v != "add" && v != "clamp")) throw bad(name, "\"add\" or \"clamp\"");
                cfg.act_eps = v == "add" ? ActEps::Add : ActEps::Clamp;
            }
            if (set_keys) set_keys->insert(field);
            break;  // the first alias present wins
        }
    }
}

struct Names {
    const io::Checkpoint& ck;
    std::map<std::string, const io::TensorEntry*> by_name;
    explicit Names(const io::Checkpoint& c) : ck(c) {
        for (const auto* t : c.state_dict_tensors()) by_name.emplace(t->name, t);
    }
    const io::TensorEntry* find(const std::string& n) const {
        auto it = by_name.find(n);
        return it == by_name.end() ? nullptr : it->second;
    }
};

// The root prefix ("model." stripped): Hugging Face keeps lm_head outside the "model." body.
std::string outer_prefix(const std::string& prefix) {
    const std::string m = "model.";
    if (prefix.size() >= m.size() && prefix.compare(prefix.size() - m.size(), m.size(), m) == 0)
        return prefix.substr(0, prefix.size() - m.size());
    return prefix;
}

bool hf_packed(const io::TensorEntry* t) { return t && t->dtype == io::DType::U8; }

// The logical [out, in] shape of a projection: HF packing keeps four rows per byte.
std::vector<std::int64_t> logical_shape(const io::TensorEntry* t) {
    auto s = t->shape;
    if (hf_packed(t) && s.size() == 2) s[0] *= 4;
    return s;
}

}  // namespace

std::string_view layout_name(Layout l) {
    switch (l) {
        case Layout::LlamaStudent: return "llama_student";
        case Layout::HfBitNet: return "hf_bitnet";
        case Layout::Gpt2: return "gpt2_bitnet";
    }
    return "?";
}

std::string tensor_name(const ModelConfig& cfg, const std::string& local) {
    if (local == "lm_head.weight") return outer_prefix(cfg.prefix) + local;
    return cfg.prefix + local;
}

nlohmann::json checkpoint_config_json(const io::Checkpoint& checkpoint) {
    const io::Value* root = checkpoint.root();
    nlohmann::json out = nullptr;
    if (root && root->kind == io::ValueKind::Dict) {
        for (const char* key : {"config", "model_config", "model_args", "args", "hparams", "hyper_parameters", "cfg"}) {
            const io::Value* v = root->get(key);
            if (!v) continue;
            nlohmann::json j = value_to_json(v, 0);
            if (!j.is_object()) continue;
            // make_run.py style: {"model": {...ModelConfig...}, "seq_len": ...}: the model part wins.
            for (const char* sub : {"model", "model_config", "model_args"}) {
                auto it = j.find(sub);
                if (it != j.end() && it->is_object()) {
                    nlohmann::json merged = j;
                    merged.erase(sub);
                    merged.update(*it);
                    j = merged;
                    break;
                }
            }
            out = j;
            break;
        }
    }
    // safetensors: a "config" entry in __metadata__ holding JSON text.
    for (const auto& [k, v] : checkpoint.metadata()) {
        if (k != "config" || !out.is_null()) continue;
        auto j = nlohmann::json::parse(v, nullptr, false);
        if (j.is_object()) out = j;
    }
    return out;
}

void apply_config_json(ModelConfig& cfg, const nlohmann::json& j, const std::string& origin) {
    apply_json(cfg, j, origin, nullptr);
}

ModelConfig resolve_config(const io::Checkpoint& checkpoint, const ConfigSources& sources) {
    const std::string file = checkpoint.path().string();
    Names names(checkpoint);
    ModelConfig cfg;

    // 1. Layout and key prefix, from the first layer's attention projection.
    bool found = false;
    for (const auto& [name, t] : names.by_name) {
        if (ends_with_component(name, "layers.0.self_attn.q_proj.weight")) {
            cfg.prefix = name.substr(0, name.size() - std::string("layers.0.self_attn.q_proj.weight").size());
            bool hf = names.find(cfg.prefix + "layers.0.self_attn.attn_sub_norm.weight") ||
                      names.find(cfg.prefix + "layers.0.self_attn.q_proj.weight_scale") || hf_packed(t);
            cfg.layout = hf ? Layout::HfBitNet : Layout::LlamaStudent;
            found = true;
            break;
        }
        if (ends_with_component(name, "h.0.attn.c_attn.weight")) {
            cfg.prefix = name.substr(0, name.size() - std::string("h.0.attn.c_attn.weight").size());
            cfg.layout = Layout::Gpt2;
            found = true;
            break;
        }
    }
    if (!found)
        throw ModelError(file + ": no known model layout in the state dict (looked for layers.0.self_attn.q_proj.weight "
                                "and h.0.attn.c_attn.weight)");

    // 2. Defaults of the layout.
    switch (cfg.layout) {
        case Layout::LlamaStudent: break;  // the ModelConfig defaults are the Distillix student's
        case Layout::HfBitNet:
            cfg.rope_theta = 500000.0;
            cfg.norm_eps = 1e-5;
            cfg.attn_softcap = 0;
            cfg.logit_softcap = 0;
            cfg.act_eps = ActEps::Clamp;
            break;
        case Layout::Gpt2:
            cfg.norm_eps = 1e-5;
            cfg.attn_softcap = 0;
            cfg.logit_softcap = 0;
            break;
    }
    cfg.tied_lm_head = !names.find(tensor_name(cfg, "lm_head.weight"));

    // 3. Explicit config: checkpoint, then config.json beside it, then file, then flags.
    Keys set;
    if (sources.use_checkpoint_config) {
        auto j = checkpoint_config_json(checkpoint);
        if (j.is_object()) {
            apply_json(cfg, j, file + ": config stored in the checkpoint", &set);
            cfg.sources.push_back("checkpoint");
        }
    }
    // Hugging Face's config.json beside the weights (io reads it with the checkpoint): the
    // model's sizes as its producer wrote them.
    if (sources.use_checkpoint_config && checkpoint.config() && !checkpoint.config()->json.empty()) {
        apply_json(cfg, checkpoint.config()->json, checkpoint.config()->path.string(), &set);
        cfg.sources.push_back("config.json:" + checkpoint.config()->path.string());
    }
    if (sources.json_file) {
        std::ifstream in(*sources.json_file);
        if (!in) throw io::FileError(sources.json_file->string() + ": cannot open the config file");
        auto j = nlohmann::json::parse(in, nullptr, false);
        if (j.is_discarded()) throw ModelError(sources.json_file->string() + ": not valid JSON");
        apply_json(cfg, j, sources.json_file->string(), &set);
        cfg.sources.push_back("file:" + sources.json_file->string());
    }
    if (!sources.overrides.empty()) {
        apply_json(cfg, sources.overrides, "command line", &set);
        cfg.sources.push_back("flags");
    }
    // A checkpoint that holds lm_head.weight is untied whatever a config says about tying.
    if (names.find(tensor_name(cfg, "lm_head.weight"))) cfg.tied_lm_head = false;

    // 4. What the shapes say, checked against what was given explicitly.
    auto need = [&](const std::string& local) -> const io::TensorEntry* {
        auto* t = names.find(tensor_name(cfg, local));
        if (!t) throw ModelError(file + ": tensor '" + tensor_name(cfg, local) + "' is missing (" +
                                 std::string(layout_name(cfg.layout)) + " layout)");
        return t;
    };
    auto settle = [&](std::int64_t& field, const char* key, std::int64_t from_shape, const io::TensorEntry* t) {
        if (set.count(key) && field != from_shape)
            throw ModelError(file + ": config says " + key + " = " + std::to_string(field) + " but tensor '" + t->name +
                             "' has shape " + shape_str(t->shape) + " (" + key + " " + std::to_string(from_shape) + ")");
        field = from_shape;
    };

    const bool gpt2 = cfg.layout == Layout::Gpt2;
    const std::string layer_key = gpt2 ? "h.%.attn.c_attn.weight" : "layers.%.self_attn.q_proj.weight";
    auto layer_name = [&](std::int64_t i, const std::string& pattern) {
        std::string s = pattern;
        s.replace(s.find('%'), 1, std::to_string(i));
        return s;
    };
    std::int64_t layers = 0;
    while (names.find(tensor_name(cfg, layer_name(layers, layer_key)))) ++layers;
    if (set.count("num_layers") && cfg.num_layers != layers)
        throw ModelError(file + ": config says num_layers = " + std::to_string(cfg.num_layers) + " but the state dict has " +
                         std::to_string(layers) + " (no tensor '" + tensor_name(cfg, layer_name(layers, layer_key)) + "')");
    cfg.num_layers = layers;

    const auto* emb = need(gpt2 ? "wte.weight" : "embed_tokens.weight");
    if (emb->shape.size() != 2) throw ModelError(file + ": tensor '" + emb->name + "' must be 2-D, has shape " + shape_str(emb->shape));
    settle(cfg.vocab_size, "vocab_size", emb->shape[0], emb);
    settle(cfg.hidden_size, "hidden_size", emb->shape[1], emb);
    const std::int64_t C = cfg.hidden_size;

    if (gpt2) {
        const auto* wpe = need("wpe.weight");
        settle(cfg.max_positions, "max_positions", wpe->shape.at(0), wpe);
        const auto* fc = need("h.0.mlp.c_fc.weight");  // Conv1D: [in, out]
        settle(cfg.intermediate_size, "intermediate_size", fc->shape.at(1), fc);
        if (!cfg.num_heads) {
            if (cfg.head_dim) cfg.num_heads = C / cfg.head_dim;
            else throw ModelError(file + ": GPT-2 layout: the number of heads cannot be read from the shapes; give num_heads "
                                         "(--heads or a config file)");
        }
        if (!cfg.head_dim) cfg.head_dim = C / cfg.num_heads;
        if (cfg.num_kv_heads && cfg.num_kv_heads != cfg.num_heads)
            throw ModelError(file + ": GPT-2 layout has no grouped-query attention, but num_kv_heads = " + std::to_string(cfg.num_kv_heads));
        cfg.num_kv_heads = cfg.num_heads;
        if (cfg.num_heads * cfg.head_dim != C)
            throw ModelError(file + ": num_heads " + std::to_string(cfg.num_heads) + " × head_dim " + std::to_string(cfg.head_dim) +
                             " must equal the hidden size " + std::to_string(C) + " (tensor '" + emb->name + "')");
    } else {
        const auto* q = need("layers.0.self_attn.q_proj.weight");
        const auto* k = need("layers.0.self_attn.k_proj.weight");
        const auto* g = need("layers.0.mlp.gate_proj.weight");
        const std::int64_t qrows = logical_shape(q).at(0), krows = logical_shape(k).at(0);
        settle(cfg.intermediate_size, "intermediate_size", logical_shape(g).at(0), g);
        if (const auto* qn = names.find(tensor_name(cfg, "layers.0.self_attn.q_norm.weight")))
            settle(cfg.head_dim, "head_dim", qn->shape.at(0), qn);
        if (!cfg.head_dim) {
            if (cfg.num_heads) cfg.head_dim = qrows / cfg.num_heads;
            else {
                cfg.head_dim = 64;  // the Llama family's usual head size; stated in the report
                cfg.sources.push_back("head_dim assumed 64");
            }
        }
        if (qrows % cfg.head_dim || krows % cfg.head_dim)
            throw ModelError(file + ": tensors '" + q->name + "' (" + std::to_string(qrows) + " rows) and '" + k->name + "' (" +
                             std::to_string(krows) + " rows) are not whole heads of head_dim " + std::to_string(cfg.head_dim) +
                             (set.count("head_dim") || set.count("num_heads") ? std::string() : " (assumed; give --heads or --head-dim)"));
        settle(cfg.num_heads, "num_heads", qrows / cfg.head_dim, q);
        settle(cfg.num_kv_heads, "num_kv_heads", krows / cfg.head_dim, k);
        if (cfg.num_kv_heads == 0 || cfg.num_heads % cfg.num_kv_heads)
            throw ModelError(file + ": num_heads " + std::to_string(cfg.num_heads) + " is not a multiple of num_kv_heads " +
                             std::to_string(cfg.num_kv_heads) + " (tensor '" + k->name + "')");
        if (cfg.head_dim % 2) throw ModelError(file + ": RoPE needs an even head_dim, got " + std::to_string(cfg.head_dim));
    }
    if (cfg.num_layers == 0) throw ModelError(file + ": the state dict has no layers");

    // 5. Every tensor the forward pass reads, with the shape the config implies.
    const std::int64_t H = cfg.num_heads, KV = cfg.num_kv_heads, D = cfg.head_dim, F = cfg.intermediate_size,
                       V = cfg.vocab_size;
    auto expect = [&](const std::string& local, std::vector<std::int64_t> shape, bool optional = false) {
        auto* t = names.find(tensor_name(cfg, local));
        if (!t) {
            if (optional) return;
            need(local);
        }
        auto got = logical_shape(t);
        if (got != shape)
            throw ModelError(file + ": tensor '" + t->name + "' has shape " + shape_str(got) + ", the config (" +
                             std::string(layout_name(cfg.layout)) + ", hidden " + std::to_string(C) + ", heads " +
                             std::to_string(H) + "/" + std::to_string(KV) + " × " + std::to_string(D) + ", ffn " +
                             std::to_string(F) + ") needs " + shape_str(shape));
    };
    for (std::int64_t i = 0; i < cfg.num_layers; ++i) {
        auto L = [&](const std::string& p) { return layer_name(i, p); };
        if (gpt2) {
            expect(L("h.%.ln_1.weight"), {C});
            expect(L("h.%.ln_1.bias"), {C}, true);
            expect(L("h.%.attn.c_attn.weight"), {C, 3 * C});
            expect(L("h.%.attn.c_attn.bias"), {3 * C}, true);
            expect(L("h.%.attn.c_proj.weight"), {C, C});
            expect(L("h.%.attn.c_proj.bias"), {C}, true);
            expect(L("h.%.ln_2.weight"), {C});
            expect(L("h.%.ln_2.bias"), {C}, true);
            expect(L("h.%.mlp.c_fc.weight"), {C, F});
            expect(L("h.%.mlp.c_fc.bias"), {F}, true);
            expect(L("h.%.mlp.c_proj.weight"), {F, C});
            expect(L("h.%.mlp.c_proj.bias"), {C}, true);
            continue;
        }
        expect(L("layers.%.input_layernorm.weight"), {C});
        expect(L("layers.%.self_attn.q_proj.weight"), {H * D, C});
        expect(L("layers.%.self_attn.k_proj.weight"), {KV * D, C});
        expect(L("layers.%.self_attn.v_proj.weight"), {KV * D, C});
        expect(L("layers.%.self_attn.o_proj.weight"), {C, H * D});
        expect(L("layers.%.post_attention_layernorm.weight"), {C});
        expect(L("layers.%.mlp.gate_proj.weight"), {F, C});
        expect(L("layers.%.mlp.up_proj.weight"), {F, C});
        expect(L("layers.%.mlp.down_proj.weight"), {C, F});
        if (cfg.layout == Layout::LlamaStudent) {
            expect(L("layers.%.self_attn.q_norm.weight"), {D}, true);
            expect(L("layers.%.self_attn.k_norm.weight"), {D}, true);
        } else {
            expect(L("layers.%.self_attn.attn_sub_norm.weight"), {H * D}, true);
            expect(L("layers.%.mlp.ffn_sub_norm.weight"), {F}, true);
        }
    }
    expect(gpt2 ? "ln_f.weight" : "norm.weight", {C});
    if (gpt2) expect("ln_f.bias", {C}, true);
    if (!cfg.tied_lm_head) expect("lm_head.weight", {V, C});
    if (cfg.bos_token_id && (*cfg.bos_token_id < 0 || *cfg.bos_token_id >= V))
        throw ModelError(file + ": bos_token_id " + std::to_string(*cfg.bos_token_id) + " is outside the vocabulary of " + std::to_string(V));
    for (auto [key, v] : std::initializer_list<std::pair<const char*, double>>{
             {"norm_eps", cfg.norm_eps}, {"attn_softcap", cfg.attn_softcap}, {"logit_softcap", cfg.logit_softcap}})
        if (!(v >= 0)) throw ModelError(file + ": config value " + key + " must be >= 0");
    if (!(cfg.rope_theta > 0)) throw ModelError(file + ": config value rope_theta must be > 0");
    return cfg;
}

nlohmann::ordered_json config_to_json(const ModelConfig& c) {
    nlohmann::ordered_json j;
    j["layout"] = std::string(layout_name(c.layout));
    j["prefix"] = c.prefix;
    j["vocab_size"] = c.vocab_size;
    j["hidden_size"] = c.hidden_size;
    j["num_layers"] = c.num_layers;
    j["num_heads"] = c.num_heads;
    j["num_kv_heads"] = c.num_kv_heads;
    j["head_dim"] = c.head_dim;
    j["intermediate_size"] = c.intermediate_size;
    if (c.max_positions) j["max_positions"] = c.max_positions;
    if (c.layout != Layout::Gpt2) j["rope_theta"] = c.rope_theta;
    j["norm_eps"] = c.norm_eps;
    j["attn_softcap"] = c.attn_softcap;
    j["logit_softcap"] = c.logit_softcap;
    j["tied_lm_head"] = c.tied_lm_head;
    j["quantize"] = c.quantize;
    j["weight_quant"] = c.weight_quant == WeightQuant::PerTensor ? "tensor" : "channel";
    j["act_eps"] = c.act_eps == ActEps::Add ? "add" : "clamp";
    j["bos_token_id"] = c.bos_token_id ? nlohmann::ordered_json(*c.bos_token_id) : nlohmann::ordered_json(nullptr);
    j["eos_token_id"] = c.eos_token_id ? nlohmann::ordered_json(*c.eos_token_id) : nlohmann::ordered_json(nullptr);
    j["parameters"] = parameter_count(c);
    j["sources"] = c.sources;
    return j;
}

std::int64_t parameter_count(const ModelConfig& c) {
    const std::int64_t C = c.hidden_size, F = c.intermediate_size, H = c.num_heads, KV = c.num_kv_heads, D = c.head_dim;
    std::int64_t per_layer = 0;
    if (c.layout == Layout::Gpt2) per_layer = 4 * C * C + 2 * C * F + 9 * C + F;
    else {
        per_layer = C * H * D * 2 + 2 * C * KV * D + 3 * C * F + 2 * C;
        per_layer += c.layout == Layout::LlamaStudent ? 2 * D : H * D + F;
    }
    std::int64_t n = c.vocab_size * C + c.num_layers * per_layer + C;
    if (!c.tied_lm_head) n += c.vocab_size * C;
    if (c.layout == Layout::Gpt2) n += c.max_positions * C + C;
    return n;
}

}  // namespace bitfsck::model
