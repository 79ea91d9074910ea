// The forward passes of the three layouts, in LibTorch. The only translation unit of bitfsck that
// includes torch: everything else talks to Model through model.hpp.
#include "trainable.h"

#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <regex>

#include "bitfsck/model/model.hpp"

namespace bitfsck::model {
namespace {

constexpr std::int64_t kPackedPerByte = 4;  // HF BitNet: four 2-bit codes per uint8

// Training's BitLinear as one autograd node. The forward is that of bitnet_reference.py's
// `F.linear(activation_quant(x), weight_quant(w))` with straight-through estimators; written as
// `x + (q(x) − x).detach()` the graph keeps a float copy of every dequantized weight matrix and
// activation for the backward (4 bytes per parameter and per activation, per matrix). This node
// keeps the ternary codes and the int8 activation codes (1 byte each) and their scales instead,
// and dequantizes again in the backward: the same products, a quarter of the memory.
struct SteBitLinear : torch::autograd::Function<SteBitLinear> {
    // per_row: γ per output row (else one per tensor); add_eps: s = max|x| + 1e-8 (Distillix), else
    // 127 / clamp(max|x|, 1e-5) (Hugging Face).
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, bool per_row, bool add_eps) {
        const at::Tensor gamma = (per_row ? w.abs().mean({1}, true) : w.abs().mean()) + 1e-8;
        const at::Tensor w_codes = at::clamp(at::round(w / gamma), -1, 1);
        // Per token, the activation scale in the reference's own form, so that codes and scale
        // give back its dequantized values bit for bit: codes · s / 127 (Distillix), codes / inv (HF).
        at::Tensor scale, x_codes;
        if (add_eps) {
            scale = x.abs().amax({-1}, true) + 1e-8;
            x_codes = at::round(at::clamp(x / scale * 127.0, -128.0, 127.0));
        } else {
            scale = 127.0 / x.abs().amax({-1}, true).clamp_min(1e-5);
            x_codes = at::clamp(at::round(x * scale), -128.0, 127.0);
        }
        const at::Tensor y = at::linear(dequantized_activations(x_codes, scale, add_eps), w_codes * gamma);
        ctx->save_for_backward({w_codes.to(at::kChar), gamma, x_codes.to(at::kChar), scale});
        ctx->saved_data["add_eps"] = add_eps;
        ctx->saved_data["x_dtype"] = static_cast<std::int64_t>(x.scalar_type());
        ctx->saved_data["w_dtype"] = static_cast<std::int64_t>(w.scalar_type());
        return y;
    }

    static at::Tensor dequantized_activations(const at::Tensor& codes, const at::Tensor& scale, bool add_eps) {
        return add_eps ? codes * scale / 127.0 : codes / scale;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor& g = grads[0];
        const auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
        const auto w_dtype = static_cast<at::ScalarType>(ctx->saved_data["w_dtype"].toInt());
        // Dequantized in the scales' own dtype, as the forward did, then cast as the forward's
        // linear did under autocast: the backward multiplies the very values the forward used.
        const at::Tensor wq = (saved[0].to(saved[1].scalar_type()) * saved[1]).to(g.scalar_type());
        const at::Tensor xq =
            dequantized_activations(saved[2].to(saved[3].scalar_type()), saved[3], ctx->saved_data["add_eps"].toBool()).to(g.scalar_type());
        // Straight through: d/dx of x + (q(x) − x).detach() is the identity, so the gradients are
        // those of linear(xq, wq) with respect to its two inputs.
        const at::Tensor grad_x = at::matmul(g, wq).to(x_dtype);
        const at::Tensor g2 = g.reshape({-1, g.size(-1)});
        const at::Tensor grad_w = at::mm(g2.t(), xq.reshape({-1, xq.size(-1)})).to(w_dtype);
        return {grad_x, grad_w, at::Tensor(), at::Tensor()};
    }
};

// A BitLinear (or a plain linear when quantization is off). Weights are quantized once at load:
// `w` holds the ternary codes and `scale` γ (a scalar or one per output row); the forward pass
// quantizes activations per token and rescales the integer-domain product.
struct QLinear {
    at::Tensor w;      // [out, in]: codes (quantized) or weights (unquantized)
    at::Tensor scale;  // γ: [] or [out]; HF checkpoints: weight_scale = 1/γ (divided, as HF does)
    at::Tensor bias;   // optional
    bool quant = true;
    bool reciprocal = false;
    ActEps eps = ActEps::Add;
    // Training: `w` is the fp32 latent weight (a leaf, or a transposed view of one) and both
    // quantizers run in every forward with straight-through estimators, as BitLinear trains.
    bool ste = false;
    WeightQuant weight_quant = WeightQuant::PerTensor;

    at::Tensor operator()(const at::Tensor& x) const {
        at::Tensor y;
        if (ste) {
            y = quant ? SteBitLinear::apply(x, w, weight_quant == WeightQuant::PerChannel, eps == ActEps::Add) : at::linear(x, w);
        } else if (!quant) {
            y = at::linear(x, w);
        } else if (eps == ActEps::Add) {
            // Distillix: s = max|x| + 1e-8, xq = round(clamp(x/s·127)), y = (xq·Wqᵀ)·γ·s/127
            at::Tensor s = x.abs().amax({-1}, true) + 1e-8;
            at::Tensor xq = at::round(at::clamp(x / s * 127.0, -128.0, 127.0));
            y = at::linear(xq, w);
            y = reciprocal ? y / (scale * (127.0 / s)) : y * scale * s / 127.0;
        } else {
            // Hugging Face: scale = 127/clamp(max|x|, 1e-5), xq = clamp(round(x·scale)), y = (xq·Wqᵀ)/(scale·ws)
            at::Tensor inv = 127.0 / x.abs().amax({-1}, true).clamp_min(1e-5);
            at::Tensor xq = at::clamp(at::round(x * inv), -128.0, 127.0);
            y = at::linear(xq, w);
            y = reciprocal ? y / (inv * scale) : y * scale / inv;
        }
        if (bias.defined()) y = y + bias;
        return y;
    }
};

struct Layer {
    at::Tensor norm1_w, norm1_b, norm2_w, norm2_b;  // input/post-attention norms (GPT-2: ln_1/ln_2 with bias)
    at::Tensor q_norm, k_norm;                      // Distillix per-head RMSNorm (optional)
    at::Tensor attn_sub_norm, ffn_sub_norm;         // HF BitNet (optional)
    QLinear q, k, v, o, gate, up, down;             // GPT-2: q holds c_attn, o c_proj, up c_fc, down mlp.c_proj
};

struct KV {
    at::Tensor k, v;  // [B, KV, T, D]
};

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
    return x * at::rsqrt(x.pow(2).mean({-1}, true) + eps) * w;
}

at::Tensor rotate_half(const at::Tensor& x) {
    const std::int64_t half = x.size(-1) / 2;
    return at::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

std::string shape_str(at::IntArrayRef s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

}  // namespace

struct Model::Impl {
    ModelConfig cfg;
    at::Device device{at::kCPU};
    std::string file;
    at::Tensor embed, wpe, norm_w, norm_b, lm_head;
    std::vector<Layer> layers;

    mutable std::mutex rope_mutex;
    mutable at::Tensor rope_cos, rope_sin;  // [positions, head_dim], grown on demand

    // cos/sin for positions [pos0, pos0+T): computed in float64 and cast, as the reference does,
    // so a cached table gives the same values as a fresh one.
    std::pair<at::Tensor, at::Tensor> rope(std::int64_t pos0, std::int64_t T) const {
        std::lock_guard lock(rope_mutex);
        const std::int64_t need = pos0 + T;
        if (!rope_cos.defined() || rope_cos.size(0) < need) {
            std::int64_t n = std::max<std::int64_t>(need, 1024);
            if (rope_cos.defined()) n = std::max(n, 2 * rope_cos.size(0));
            auto dopt = at::TensorOptions().dtype(at::kDouble);
            at::Tensor inv_freq = 1.0 / at::pow(cfg.rope_theta, at::arange(0, cfg.head_dim, 2, dopt) / double(cfg.head_dim));
            at::Tensor freqs = at::outer(at::arange(n, dopt), inv_freq);
            at::Tensor emb = at::cat({freqs, freqs}, -1);
            rope_cos = emb.cos().to(at::kFloat).to(device);
            rope_sin = emb.sin().to(at::kFloat).to(device);
        }
        return {rope_cos.slice(0, pos0, need), rope_sin.slice(0, pos0, need)};
    }

    at::Tensor attention(const Layer& L, std::int64_t li, const at::Tensor& x, std::int64_t pos0, KV* cache,
                         const AttentionSink* sink) const {
        const std::int64_t B = x.size(0), T = x.size(1), H = cfg.num_heads, KVH = cfg.num_kv_heads, D = cfg.head_dim;
        at::Tensor q, k, v;
        if (cfg.layout == Layout::Gpt2) {
            at::Tensor qkv = L.q(x);
            const std::int64_t C = cfg.hidden_size;
            q = qkv.slice(-1, 0, C), k = qkv.slice(-1, C, 2 * C), v = qkv.slice(-1, 2 * C, 3 * C);
        } else {
            q = L.q(x), k = L.k(x), v = L.v(x);
        }
        q = q.reshape({B, T, H, D});
        k = k.reshape({B, T, KVH, D});
        v = v.reshape({B, T, KVH, D});
        if (L.q_norm.defined()) q = rms_norm(q, L.q_norm, cfg.norm_eps);  // per head, before RoPE
        if (L.k_norm.defined()) k = rms_norm(k, L.k_norm, cfg.norm_eps);
        q = q.transpose(1, 2), k = k.transpose(1, 2), v = v.transpose(1, 2);
        if (cfg.layout != Layout::Gpt2) {
            auto [cos, sin] = rope(pos0, T);
            q = q * cos + rotate_half(q) * sin;
            k = k * cos + rotate_half(k) * sin;
        }
        if (cache) {
            if (cache->k.defined()) {
                k = at::cat({cache->k, k}, 2);
                v = at::cat({cache->v, v}, 2);
            }
            cache->k = k, cache->v = v;
        }
        const std::int64_t K = k.size(2);
        if (H != KVH) {  // q head i reads kv head i / (H/KV), as repeat_interleave does
            k = k.repeat_interleave(H / KVH, 1);
            v = v.repeat_interleave(H / KVH, 1);
        }
        at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(double(D));
        if (cfg.attn_softcap > 0) scores = cfg.attn_softcap * at::tanh(scores / cfg.attn_softcap);  // cap, then mask
        auto iopt = at::TensorOptions().dtype(at::kLong).device(device);
        at::Tensor causal = at::arange(K, iopt).unsqueeze(0) > at::arange(pos0, pos0 + T, iopt).unsqueeze(1);
        scores = scores.masked_fill(causal, -std::numeric_limits<float>::infinity());
        at::Tensor probs = at::softmax(scores.to(at::kFloat), -1);
        if (sink && *sink) {
            at::Tensor host = probs.to(at::kCPU).contiguous();
            (*sink)(LayerAttention{li, B, H, T, K, host.data_ptr<float>()});
        }
        at::Tensor out = at::matmul(probs.to(v.scalar_type()), v).transpose(1, 2).reshape({B, T, H * D});
        if (L.attn_sub_norm.defined()) out = rms_norm(out, L.attn_sub_norm, cfg.norm_eps);
        return L.o(out);
    }

    at::Tensor mlp(const Layer& L, const at::Tensor& x) const {
        switch (cfg.layout) {
            case Layout::LlamaStudent: return L.down(at::silu(L.gate(x)) * L.up(x));  // SwiGLU
            case Layout::HfBitNet: {
                at::Tensor h = at::relu(L.gate(x)).pow(2) * L.up(x);  // squared ReLU, gated
                if (L.ffn_sub_norm.defined()) h = rms_norm(h, L.ffn_sub_norm, cfg.norm_eps);
                return L.down(h);
            }
            case Layout::Gpt2: return L.down(compat::gelu_tanh(L.up(x)));
        }
        return {};
    }

    at::Tensor norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const {
        if (cfg.layout == Layout::Gpt2) return at::layer_norm(x, {cfg.hidden_size}, w, b, cfg.norm_eps);
        return rms_norm(x, w, cfg.norm_eps);
    }

    void check_ids(std::span<const std::int64_t> ids, std::int64_t pos0, std::int64_t T) const {
        for (auto id : ids)
            if (id < 0 || id >= cfg.vocab_size)
                throw ModelError(file + ": token id " + std::to_string(id) + " is outside the vocabulary of " +
                                 std::to_string(cfg.vocab_size));
        if (cfg.max_positions && pos0 + T > cfg.max_positions)
            throw ModelError(file + ": position " + std::to_string(pos0 + T - 1) + " is past the learned position table (" +
                             std::to_string(cfg.max_positions) + " positions, tensor '" + tensor_name(cfg, "wpe.weight") + "')");
    }

    // ids [B, T] on the device. Returns the logits [B, T, V], or the final hidden state when !logits.
    at::Tensor run(const at::Tensor& ids, std::int64_t pos0, std::vector<KV>* cache, const AttentionSink* sink,
                   bool logits) const {
        at::Tensor h = at::embedding(embed, ids);
        if (cfg.layout == Layout::Gpt2) h = h + wpe.slice(0, pos0, pos0 + ids.size(1));
        for (std::size_t i = 0; i < layers.size(); ++i) {
            const Layer& L = layers[i];
            h = h + attention(L, static_cast<std::int64_t>(i), norm(h, L.norm1_w, L.norm1_b), pos0, cache ? &(*cache)[i] : nullptr, sink);
            h = h + mlp(L, norm(h, L.norm2_w, L.norm2_b));
        }
        if (!logits) return h;
        at::Tensor out = at::linear(norm(h, norm_w, norm_b), lm_head);  // lm_head is never quantized
        if (cfg.logit_softcap > 0) out = cfg.logit_softcap * at::tanh(out / cfg.logit_softcap);
        return out;
    }

    at::Tensor upload(std::span<const std::int64_t> ids, std::int64_t B, std::int64_t T) const {
        at::Tensor t = at::empty({B, T}, at::TensorOptions().dtype(at::kLong));
        std::copy(ids.begin(), ids.end(), t.data_ptr<std::int64_t>());
        return t.to(device);
    }
};

namespace {

class Loader {
public:
    // With `trainable`, every tensor is loaded as an fp32 leaf that requires grad (packed ternary
    // exports as their decoded float view) and recorded there once; BitLinears quantize in each
    // forward with straight-through estimators.
    Loader(const io::Checkpoint& ck, Model::Impl& m, std::vector<TrainableParameter>* trainable = nullptr)
        : ck_(ck), m_(m), trainable_(trainable) {
        for (const auto* t : ck.state_dict_tensors()) by_name_.emplace(t->name, t);
    }

    const io::TensorEntry* find(const std::string& local) const {
        auto it = by_name_.find(tensor_name(m_.cfg, local));
        return it == by_name_.end() ? nullptr : it->second;
    }

    // The tensor as float32 on the host, in its stored shape.
    at::Tensor host(const io::TensorEntry& e) const {
        at::Tensor t = at::empty(std::vector<std::int64_t>(e.shape.begin(), e.shape.end()), at::TensorOptions().dtype(at::kFloat));
        // NaN/Inf weights are loaded as they are: the degeneration check reports what they do.
        if (e.numel()) ck_.data(e).read(0, e.numel(), t.data_ptr<float>());
        return t;
    }

    at::Tensor plain(const std::string& local, bool optional = false) const {
        const auto* e = find(local);
        if (!e) {
            if (optional) return {};
            throw ModelError(m_.file + ": tensor '" + tensor_name(m_.cfg, local) + "' is missing");
        }
        at::Tensor t = host(*e).to(m_.device);
        if (trainable_) t = leaf(*e, t);
        return t;
    }

    at::Tensor leaf(const io::TensorEntry& e, at::Tensor t) const {
        t = t.detach().clone().requires_grad_(true);
        trainable_->push_back({e.name, t, e.encoding != io::TensorEncoding::Plain});
        return t;
    }

    QLinear linear(const std::string& local, bool conv1d = false, const std::string& bias_local = {}) const {
        const ModelConfig& cfg = m_.cfg;
        const auto* e = find(local);
        if (!e) throw ModelError(m_.file + ": tensor '" + tensor_name(cfg, local) + "' is missing");
        QLinear q;
        q.quant = cfg.quantize;
        q.eps = cfg.act_eps;
        if (!bias_local.empty()) q.bias = plain(bias_local, true);
        if (trainable_) {
            if (e->encoding == io::TensorEncoding::Plain && e->dtype == io::DType::U8)
                throw ModelError(m_.file + ": tensor '" + e->name + "' is a packed uint8 matrix; only float or decodable ternary exports can be trained");
            at::Tensor w = leaf(*e, host(*e).to(m_.device));
            q.ste = true;
            q.weight_quant = cfg.weight_quant;
            q.w = conv1d ? w.t() : w;
            return q;
        }

        const auto* ws = find(local + "_scale");  // HF: "...proj.weight_scale"
        if (e->encoding != io::TensorEncoding::Plain) {
            // io decoded a packed layout into its float view (code × scale, or code / scale): take
            // the codes and io's scales back apart rather than re-quantizing the dequantized values.
            if (!io::encoding_is_ternary(e->encoding))
                throw ModelError(m_.file + ": tensor '" + e->name + "' is packed as " + std::string(io::encoding_name(e->encoding)) +
                                 ", which is not ternary");
            at::Tensor w = host(*e);
            if (conv1d) w = w.t().contiguous();
            const auto& sc = e->packed.scales;
            const std::int64_t rows = w.size(0);
            if (!cfg.quantize) {
                q.w = w;
            } else if (sc.size() == 1 || (static_cast<std::int64_t>(sc.size()) == rows && !conv1d)) {
                q.w = at::sign(w);
                q.scale = at::tensor(std::vector<float>(sc.begin(), sc.end()));
                if (sc.size() == 1) q.scale = q.scale.reshape({});
                q.reciprocal = e->packed.reciprocal_scale;
            } else {
                throw ModelError(m_.file + ": tensor '" + e->name + "' (" + std::string(io::encoding_name(e->encoding)) +
                                 ") has block scales; the forward pass needs one scale per tensor or per output row");
            }
        } else if (e->dtype == io::DType::U8) {
            // HF packing: row block i (rows [i·R, (i+1)·R)) of the logical matrix sits in bits 2i..2i+1
            // of the [R, in] bytes, each code stored as w+1. Decoded here because io's packed
            // decoding was still being written when this was; the bytes are read as exact floats.
            if (!ws) throw ModelError(m_.file + ": packed tensor '" + e->name + "' has no '" + e->name + "_scale'");
            at::Tensor bytes = host(*e).to(at::kInt);
            std::vector<at::Tensor> blocks;
            for (std::int64_t i = 0; i < kPackedPerByte; ++i) blocks.push_back(at::bitwise_and(at::bitwise_right_shift(bytes, 2 * i), 3));
            at::Tensor codes = at::cat(blocks, 0);
            if ((codes == 3).any().item<bool>()) {
                auto bad = at::nonzero(codes == 3)[0];
                throw ModelError(m_.file + ": tensor '" + e->name + "' holds the impossible 2-bit code 3 (corrupted packing) at logical [" +
                                 std::to_string(bad[0].item<std::int64_t>()) + ", " + std::to_string(bad[1].item<std::int64_t>()) + "]");
            }
            codes = (codes - 1).to(at::kFloat);
            at::Tensor scale = host(*ws).reshape({-1});
            if (scale.numel() != 1 && scale.numel() != codes.size(0))
                throw ModelError(m_.file + ": tensor '" + ws->name + "' has shape " + shape_str(scale.sizes()) +
                                 "; expected one scale or one per output row (" + std::to_string(codes.size(0)) + ")");
            if (scale.numel() == 1) scale = scale.reshape({});
            if (!(scale != 0).all().item<bool>()) throw ModelError(m_.file + ": tensor '" + ws->name + "' holds a zero scale");
            if (cfg.quantize) {
                q.w = codes, q.scale = scale, q.reciprocal = true;
            } else {
                q.w = scale.dim() ? codes / scale.unsqueeze(1) : codes / scale;
            }
        } else {
            at::Tensor w = host(*e);
            if (conv1d) w = w.t().contiguous();  // Conv1D stores [in, out]
            if (!cfg.quantize) {
                q.w = w;
            } else if (cfg.layout == Layout::HfBitNet) {
                // Unpacked HF weights: AutoBitLinear's online absmean, scale = 1/clamp(mean|W|, 1e-5).
                at::Tensor m = cfg.weight_quant == WeightQuant::PerTensor ? w.abs().mean() : w.abs().mean({1});
                at::Tensor s = 1.0 / m.clamp_min(1e-5);
                q.w = at::clamp(at::round(w * (s.dim() ? s.unsqueeze(1) : s)), -1, 1);
                q.scale = s, q.reciprocal = true;
            } else {
                // Distillix absmean: γ = mean|W| + 1e-8, codes = clamp(round(W/γ), -1, 1).
                at::Tensor g = (cfg.weight_quant == WeightQuant::PerTensor ? w.abs().mean() : w.abs().mean({1})) + 1e-8;
                q.w = at::clamp(at::round(w / (g.dim() ? g.unsqueeze(1) : g)), -1, 1);
                q.scale = g;
            }
        }
        q.w = q.w.to(m_.device);
        if (q.scale.defined()) q.scale = q.scale.to(m_.device);
        return q;
    }

private:
    const io::Checkpoint& ck_;
    Model::Impl& m_;
    std::vector<TrainableParameter>* trainable_;
    std::map<std::string, const io::TensorEntry*> by_name_;
};

at::Device parse_device(const std::string& name) {
    require_device(name);
    return name == "cpu" ? at::Device(at::kCPU) : at::Device(name);
}

std::string layer_key(std::size_t i, const std::string& rest) { return "layers." + std::to_string(i) + "." + rest; }
std::string h_key(std::size_t i, const std::string& rest) { return "h." + std::to_string(i) + "." + rest; }

}  // namespace

bool valid_device_name(const std::string& name) {
    static const std::regex re("^(cpu|cuda|cuda:[0-9]+)$");
    return std::regex_match(name, re);
}

void require_device(const std::string& name) {
    if (!valid_device_name(name)) throw ModelUsageError("--device " + name + ": expected cpu, cuda or cuda:N");
    if (name == "cpu") return;
    if (!compat::built_with_cuda)
        throw ModelUsageError("--device " + name + ": this LibTorch (" + compat::version_string() + ") was built without CUDA; use --device cpu");
    if (!torch::cuda::is_available())
        throw ModelUsageError("--device " + name + ": this LibTorch (" + compat::version_string() +
                              ") has CUDA but sees no GPU on this machine; use --device cpu");
    const at::Device d(name);
    if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
        throw ModelUsageError("--device " + name + ": only " + std::to_string(torch::cuda::device_count()) + " CUDA device(s) visible");
}

Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

namespace {

void build_layers(Model::Impl* impl, const Loader& ld) {
    const ModelConfig& cfg = impl->cfg;
    const bool gpt2 = cfg.layout == Layout::Gpt2;
    impl->embed = ld.plain(gpt2 ? "wte.weight" : "embed_tokens.weight");
    if (gpt2) impl->wpe = ld.plain("wpe.weight");
    impl->norm_w = ld.plain(gpt2 ? "ln_f.weight" : "norm.weight");
    if (gpt2) impl->norm_b = ld.plain("ln_f.bias", true);
    impl->lm_head = cfg.tied_lm_head ? impl->embed : ld.plain("lm_head.weight");
    for (std::int64_t i = 0; i < cfg.num_layers; ++i) {
        Layer L;
        if (gpt2) {
            auto k = [&](const std::string& r) { return h_key(i, r); };
            L.norm1_w = ld.plain(k("ln_1.weight")), L.norm1_b = ld.plain(k("ln_1.bias"), true);
            L.norm2_w = ld.plain(k("ln_2.weight")), L.norm2_b = ld.plain(k("ln_2.bias"), true);
            L.q = ld.linear(k("attn.c_attn.weight"), true, k("attn.c_attn.bias"));
            L.o = ld.linear(k("attn.c_proj.weight"), true, k("attn.c_proj.bias"));
            L.up = ld.linear(k("mlp.c_fc.weight"), true, k("mlp.c_fc.bias"));
            L.down = ld.linear(k("mlp.c_proj.weight"), true, k("mlp.c_proj.bias"));
        } else {
            auto k = [&](const std::string& r) { return layer_key(i, r); };
            L.norm1_w = ld.plain(k("input_layernorm.weight"));
            L.norm2_w = ld.plain(k("post_attention_layernorm.weight"));
            L.q = ld.linear(k("self_attn.q_proj.weight"));
            L.k = ld.linear(k("self_attn.k_proj.weight"));
            L.v = ld.linear(k("self_attn.v_proj.weight"));
            L.o = ld.linear(k("self_attn.o_proj.weight"));
            L.gate = ld.linear(k("mlp.gate_proj.weight"));
            L.up = ld.linear(k("mlp.up_proj.weight"));
            L.down = ld.linear(k("mlp.down_proj.weight"));
            L.q_norm = ld.plain(k("self_attn.q_norm.weight"), true);
            L.k_norm = ld.plain(k("self_attn.k_norm.weight"), true);
            L.attn_sub_norm = ld.plain(k("self_attn.attn_sub_norm.weight"), true);
            L.ffn_sub_norm = ld.plain(k("mlp.ffn_sub_norm.weight"), true);
        }
        impl->layers.push_back(std::move(L));
    }
}

std::shared_ptr<Model::Impl> start_impl(const io::Checkpoint& checkpoint, const LoadOptions& options) {
    auto impl = std::make_shared<Model::Impl>();
    impl->device = parse_device(options.device);
    impl->cfg = resolve_config(checkpoint, options.config);
    impl->file = checkpoint.path().string();
    if (options.threads > 0) at::set_num_threads(options.threads);
    return impl;
}

}  // namespace

Model Model::load(const io::Checkpoint& checkpoint, const LoadOptions& options) {
    auto impl = start_impl(checkpoint, options);
    c10::InferenceMode guard;
    build_layers(impl.get(), Loader(checkpoint, *impl));
    return Model(std::move(impl));
}

TrainableModel load_trainable(const io::Checkpoint& checkpoint, const LoadOptions& options) {
    TrainableModel m;
    m.impl = start_impl(checkpoint, options);
    if (m.impl->cfg.layout == Layout::HfBitNet)
        throw ModelError(checkpoint.path().string() + ": fine-tuning trains the Llama-style student and GPT-2 BitNet layouts; "
                         "this is a Hugging Face BitNet checkpoint");
    build_layers(m.impl.get(), Loader(checkpoint, *m.impl, &m.parameters));
    return m;
}

at::Tensor TrainableModel::logits(const at::Tensor& ids) const {
    at::Tensor host = ids.to(at::kCPU).contiguous();
    impl->check_ids(std::span<const std::int64_t>(host.data_ptr<std::int64_t>(), host.numel()), 0, ids.size(1));
    return impl->run(ids.to(impl->device), 0, nullptr, nullptr, true);
}

const ModelConfig& TrainableModel::config() const { return impl->cfg; }
at::Device TrainableModel::device() const { return impl->device; }

const ModelConfig& Model::config() const { return impl_->cfg; }
std::string Model::device() const { return impl_->device.str(); }

std::vector<float> Model::forward(std::span<const std::int64_t> ids, std::int64_t batch, std::int64_t seq, bool want_logits,
                                  const AttentionSink& on_attention) const {
    if (static_cast<std::int64_t>(ids.size()) != batch * seq || batch <= 0 || seq <= 0)
        throw ModelError("forward: " + std::to_string(ids.size()) + " ids do not make a [" + std::to_string(batch) + ", " +
                         std::to_string(seq) + "] batch");
    impl_->check_ids(ids, 0, seq);
    c10::InferenceMode guard;
    at::Tensor out = impl_->run(impl_->upload(ids, batch, seq), 0, nullptr, &on_attention, want_logits);
    if (!want_logits) return {};
    at::Tensor host = out.to(at::kCPU).to(at::kFloat).contiguous();
    return std::vector<float>(host.data_ptr<float>(), host.data_ptr<float>() + host.numel());
}

LossSum Model::next_token_loss(std::span<const std::int64_t> ids, std::int64_t batch, std::int64_t seq_plus_one) const {
    if (static_cast<std::int64_t>(ids.size()) != batch * seq_plus_one || seq_plus_one < 2)
        throw ModelError("next_token_loss: ids do not make [batch, seq + 1] windows");
    const std::int64_t T = seq_plus_one - 1;
    impl_->check_ids(ids, 0, T);
    c10::InferenceMode guard;
    at::Tensor all = impl_->upload(ids, batch, seq_plus_one);
    at::Tensor logits = impl_->run(all.slice(1, 0, T), 0, nullptr, nullptr, true);
    at::Tensor logp = at::log_softmax(logits.to(at::kFloat), -1);
    at::Tensor picked = logp.gather(-1, all.slice(1, 1, seq_plus_one).unsqueeze(-1));
    LossSum r;
    const at::Tensor nll = picked.to(at::kDouble).neg();
    r.nll_sum = -picked.to(at::kDouble).sum().item<double>();
    r.count = batch * T;
    const at::Tensor rows = nll.sum({1, 2}).contiguous().cpu();
    r.row_nll.assign(rows.data_ptr<double>(), rows.data_ptr<double>() + batch);
    return r;
}

struct Session::State {
    std::shared_ptr<const Model::Impl> impl;
    std::vector<KV> cache;
    std::int64_t pos = 0;
};

Session Model::start_session() const {
    auto s = std::make_unique<Session::State>();
    s->impl = impl_;
    s->cache.resize(impl_->layers.size());
    return Session(std::move(s));
}

Session::Session(std::unique_ptr<State> s) : state_(std::move(s)) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;
Session::~Session() = default;
std::int64_t Session::position() const { return state_->pos; }

std::vector<float> Session::feed(std::span<const std::int64_t> ids) {
    if (ids.empty()) throw ModelError("generate: nothing to feed");
    const auto& impl = *state_->impl;
    const auto T = static_cast<std::int64_t>(ids.size());
    impl.check_ids(ids, state_->pos, T);
    c10::InferenceMode guard;
    at::Tensor logits = impl.run(impl.upload(ids, 1, T), state_->pos, &state_->cache, nullptr, true);
    state_->pos += T;
    at::Tensor last = logits[0][T - 1].to(at::kCPU).to(at::kFloat).contiguous();
    return std::vector<float>(last.data_ptr<float>(), last.data_ptr<float>() + last.numel());
}

}  // namespace bitfsck::model
