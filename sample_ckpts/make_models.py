#!/usr/bin/python3
"""Tiny models of every layout bitfsck's model/ runs, with reference outputs computed by PyTorch.

Writes sample_ckpts/models/:
  llama_student.pt         Distillix StudentLLM layout (bitnet_reference.py), config dict in the checkpoint
  hf_bitnet.pt + hf_bitnet.config.json
                           Hugging Face BitNet layout: packed uint8 weights + weight_scale (bf16),
                           attn_sub_norm / ffn_sub_norm, squared-ReLU MLP, untied lm_head; the config
                           lives in a JSON file, as Hugging Face keeps it
  gpt2_bitnet.pt           GPT-2 layout with BitLinear: Conv1D weights stored [in, out], learned
                           positions, LayerNorm with bias; the config is a pickled dataclass instance
                           (an opaque object to bitfsck)
  <name>.ref.json          input ids, shapes, and which .f32 files hold what
  <name>.<what>.f32        little-endian float32 arrays: logits, attention probabilities, and for the
                           student also unquantized and per-channel logits
  induction_trained.pt     a 2-layer ternary student trained on repeated random sequences: layer 1 head 0 is
                           an induction head (make_induction says how)
  induction_fresh.pt       the same architecture freshly initialised (has none)
  induction.expected.json  what PyTorch measured on both: IPMR of every head, quantized and not, on the
                           batch of bitfsck's repeated-random probe (mt19937_64 seed 1234, 8 × 64 twice)

Deterministic (fixed seeds, 1 thread). Run: /usr/bin/python3 sample_ckpts/make_models.py [student hf gpt2 induction]
(~1 min, plus ~7-30 min for induction, depending on the BLAS)
"""
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "models")
sys.path.insert(0, HERE)
import bitnet_reference as ref  # noqa: E402

torch.set_num_threads(1)  # spin-waiting OpenMP threads crawl on a shared machine; 1 is fast enough


# --- Distillix quantizers (the spec bitfsck implements) -----------------------------------------
# bitnet_reference.py's activation_quant uses 127/clamp(max|x|, 1e-5); the Distillix student uses
# s = max|x| + 1e-8 and x/s·127. The module-level function is swapped so the reference module itself
# (its BitLinear, attention, norms, RoPE) is what computes the expected outputs.

def distillix_activation_quant(x):
    s = x.abs().amax(dim=-1, keepdim=True) + 1e-8
    xq = torch.round(torch.clamp(x / s * 127, -128, 127))
    return x + (xq * s / 127 - x).detach()


ref.activation_quant = distillix_activation_quant


def write_f32(name, what, t):
    path = os.path.join(OUT, f"{name}.{what}.f32")
    t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tofile(path)
    return {"file": os.path.basename(path), "shape": list(t.shape)}


def save_ref(name, ids, arrays, extra=None):
    doc = {"input_ids": ids.tolist(), "arrays": arrays}
    doc.update(extra or {})
    with open(os.path.join(OUT, f"{name}.ref.json"), "w") as f:
        json.dump(doc, f, indent=1)


# --- the student with attention capture ---------------------------------------------------------

def student_forward(model, ids, quant=True, per_channel=False):
    """bitnet_reference.StudentLLM.forward written out to capture attention; checked against it."""
    cfg = model.cfg

    def lin(layer, x):
        if not quant:
            return F.linear(x, layer.weight)
        w = layer.weight
        g = (w.abs().mean(dim=1, keepdim=True) if per_channel else w.abs().mean()) + 1e-8
        codes = torch.clamp(torch.round(w / g), -1, 1)
        s = x.abs().amax(dim=-1, keepdim=True) + 1e-8  # the same quantizer, without the STE's rounding noise
        return F.linear(torch.round(torch.clamp(x / s * 127, -128, 127)), codes) * g.reshape(-1) * s / 127

    b, t = ids.shape
    cos, sin = ref.rope_cos_sin(t, cfg.head_dim, cfg.rope_theta)
    h = model.embed_tokens(ids)
    probs_all = []
    for layer in model.layers:
        a = layer.self_attn
        x = layer.input_layernorm(h)
        q = a.q_norm(lin(a.q_proj, x).view(b, t, cfg.num_heads, cfg.head_dim)).transpose(1, 2)
        k = a.k_norm(lin(a.k_proj, x).view(b, t, cfg.num_kv_heads, cfg.head_dim)).transpose(1, 2)
        v = lin(a.v_proj, x).view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        q, k = ref.apply_rope(q, cos, sin), ref.apply_rope(k, cos, sin)
        rep = cfg.num_heads // cfg.num_kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(cfg.head_dim)
        scores = cfg.attn_softcap * torch.tanh(scores / cfg.attn_softcap)
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        p = torch.softmax(scores, dim=-1)
        probs_all.append(p)
        out = (p @ v).transpose(1, 2).reshape(b, t, cfg.num_heads * cfg.head_dim)
        h = h + lin(a.o_proj, out)
        m = layer.mlp
        x = layer.post_attention_layernorm(h)
        h = h + lin(m.down_proj, F.silu(lin(m.gate_proj, x)) * lin(m.up_proj, x))
    logits = F.linear(model.norm(h), model.embed_tokens.weight)
    return cfg.logit_softcap * torch.tanh(logits / cfg.logit_softcap), torch.stack(probs_all)


def jitter_norms(model, gen):
    # Norm weights of 1 would hide a transposed or missing norm; random positive ones do not.
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or "layernorm" in name:
            p.data = 1 + 0.3 * torch.rand(p.shape, generator=gen) - 0.15


@torch.no_grad()
def make_student():
    torch.manual_seed(1)
    cfg = ref.ModelConfig(vocab_size=256, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                          intermediate_size=172, rope_theta=1e6, attn_softcap=5.0, logit_softcap=10.0, init_std=0.1)
    model = ref.StudentLLM(cfg).eval()
    gen = torch.Generator().manual_seed(2)
    jitter_norms(model, gen)
    model.embed_tokens.weight.data *= 5  # logits of a few units, so the soft-cap and 1e-4 both mean something
    ids = torch.randint(0, 256, (2, 24), generator=gen)
    logits, probs = student_forward(model, ids)
    diff = (logits - model(ids)).abs().max().item()  # the STE form w + (wq - w) differs in the last bits only
    assert diff < 1e-4, f"captured forward differs from bitnet_reference.StudentLLM by {diff}"
    print("llama_student: captured forward vs bitnet_reference.StudentLLM max abs diff", diff)
    unq, _ = student_forward(model, ids, quant=False)
    chan, _ = student_forward(model, ids, per_channel=True)
    torch.save({"model_state_dict": model.state_dict(), "step": 0, "config": {"model": cfg.to_dict()}},
               os.path.join(OUT, "llama_student.pt"))
    save_ref("llama_student", ids, {"logits": write_f32("llama_student", "logits", logits),
                                    "attention": write_f32("llama_student", "attention", probs),
                                    "logits_unquantized": write_f32("llama_student", "logits_unquantized", unq),
                                    "logits_per_channel": write_f32("llama_student", "logits_per_channel", chan)})
    print("llama_student: logits range", float(logits.min()), float(logits.max()))


# --- Hugging Face BitNet ------------------------------------------------------------------------

def hf_pack(codes):
    """transformers' pack_weights: row block i of R = ceil(out/4) rows goes to bits 2i..2i+1, code = w+1."""
    out = codes.shape[0]
    r = (out + 3) // 4
    u = (codes + 1).to(torch.uint8)
    packed = torch.zeros((r,) + tuple(codes.shape[1:]), dtype=torch.uint8)
    for i in range(4):
        block = u[i * r:min((i + 1) * r, out)]
        packed[:block.shape[0]] |= block << (2 * i)
    return packed


def hf_rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


@torch.no_grad()
def make_hf():
    g = torch.Generator().manual_seed(3)
    V, C, L, H, KV, D, FF, eps, theta = 128, 64, 2, 4, 2, 16, 96, 1e-5, 500000.0
    sd = {}
    lin = {}  # name -> (codes float, weight_scale float32 as stored)

    def bitlinear(name, out, inp):
        w = torch.randn(out, inp, generator=g) * 0.1
        s = 1.0 / w.abs().mean().clamp(min=1e-5)
        codes = torch.clamp(torch.round(w * s), -1, 1)
        ws = s.reshape(1).to(torch.bfloat16)
        sd[name + ".weight"] = hf_pack(codes.to(torch.int8))
        sd[name + ".weight_scale"] = ws
        lin[name] = (codes, ws.float())

    def norm(name, n):
        sd[name] = 1 + 0.3 * torch.rand(n, generator=g) - 0.15

    sd["model.embed_tokens.weight"] = torch.randn(V, C, generator=g)
    for i in range(L):
        p = f"model.layers.{i}."
        norm(p + "input_layernorm.weight", C)
        for n, o, inp in [("q_proj", H * D, C), ("k_proj", KV * D, C), ("v_proj", KV * D, C), ("o_proj", C, H * D)]:
            bitlinear(p + "self_attn." + n, o, inp)
        norm(p + "self_attn.attn_sub_norm.weight", H * D)
        norm(p + "post_attention_layernorm.weight", C)
        for n, o, inp in [("gate_proj", FF, C), ("up_proj", FF, C), ("down_proj", C, FF)]:
            bitlinear(p + "mlp." + n, o, inp)
        norm(p + "mlp.ffn_sub_norm.weight", FF)
    norm("model.norm.weight", C)
    sd["lm_head.weight"] = torch.randn(V, C, generator=g) * 0.5

    def apply(name, x):  # transformers' BitLinear forward
        codes, ws = lin[name]
        scale = 127 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        xq = (x * scale).round().clamp(-128, 127)
        return F.linear(xq, codes) / (scale * ws)

    ids = torch.randint(0, V, (2, 20), generator=g)
    b, t = ids.shape
    cos, sin = ref.rope_cos_sin(t, D, theta)
    h = F.embedding(ids, sd["model.embed_tokens.weight"])
    probs_all = []
    for i in range(L):
        p = f"model.layers.{i}."
        x = hf_rms(h, sd[p + "input_layernorm.weight"], eps)
        q = apply(p + "self_attn.q_proj", x).view(b, t, H, D).transpose(1, 2)
        k = apply(p + "self_attn.k_proj", x).view(b, t, KV, D).transpose(1, 2)
        v = apply(p + "self_attn.v_proj", x).view(b, t, KV, D).transpose(1, 2)
        q, k = ref.apply_rope(q, cos, sin), ref.apply_rope(k, cos, sin)
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        sc = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        sc = sc.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        pr = torch.softmax(sc.float(), -1)
        probs_all.append(pr)
        o = (pr @ v).transpose(1, 2).reshape(b, t, H * D)
        h = h + apply(p + "self_attn.o_proj", hf_rms(o, sd[p + "self_attn.attn_sub_norm.weight"], eps))
        x = hf_rms(h, sd[p + "post_attention_layernorm.weight"], eps)
        m = F.relu(apply(p + "mlp.gate_proj", x)).pow(2) * apply(p + "mlp.up_proj", x)
        h = h + apply(p + "mlp.down_proj", hf_rms(m, sd[p + "mlp.ffn_sub_norm.weight"], eps))
    logits = F.linear(hf_rms(h, sd["model.norm.weight"], eps), sd["lm_head.weight"])
    torch.save(sd, os.path.join(OUT, "hf_bitnet.pt"))
    with open(os.path.join(OUT, "hf_bitnet.config.json"), "w") as f:
        json.dump({"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "vocab_size": V, "hidden_size": C,
                   "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV, "intermediate_size": FF,
                   "rms_norm_eps": eps, "rope_theta": theta, "hidden_act": "relu2", "tie_word_embeddings": False,
                   "bos_token_id": 1, "eos_token_id": 2}, f, indent=1)
    save_ref("hf_bitnet", ids, {"logits": write_f32("hf_bitnet", "logits", logits),
                                "attention": write_f32("hf_bitnet", "attention", torch.stack(probs_all))})
    print("hf_bitnet: logits range", float(logits.min()), float(logits.max()))


# --- GPT-2 BitNet -------------------------------------------------------------------------------

@dataclasses.dataclass
class GPTConfig:  # pickled as __main__.GPTConfig: an opaque object with its attributes as state
    block_size: int = 32
    vocab_size: int = 96
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64


@torch.no_grad()
def make_gpt2():
    g = torch.Generator().manual_seed(4)
    cfg = GPTConfig()
    V, C, L, H, T = cfg.vocab_size, cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.block_size
    D = C // H
    sd = {"wte.weight": torch.randn(V, C, generator=g), "wpe.weight": torch.randn(T, C, generator=g) * 0.3}

    def conv(name, inp, out):
        sd[name + ".weight"] = torch.randn(inp, out, generator=g) * 0.1  # Conv1D: [in, out]
        sd[name + ".bias"] = torch.randn(out, generator=g) * 0.05

    def ln(name):
        sd[name + ".weight"] = 1 + 0.3 * torch.rand(C, generator=g) - 0.15
        sd[name + ".bias"] = torch.randn(C, generator=g) * 0.05

    for i in range(L):
        p = f"h.{i}."
        ln(p + "ln_1"), conv(p + "attn.c_attn", C, 3 * C), conv(p + "attn.c_proj", C, C)
        ln(p + "ln_2"), conv(p + "mlp.c_fc", C, 4 * C), conv(p + "mlp.c_proj", 4 * C, C)
    ln("ln_f")

    def bitlinear(name, x):
        w = sd[name + ".weight"].t()
        gmm = w.abs().mean() + 1e-8
        wq = torch.clamp(torch.round(w / gmm), -1, 1)
        s = x.abs().amax(dim=-1, keepdim=True) + 1e-8
        xq = torch.round(torch.clamp(x / s * 127, -128, 127))
        return F.linear(xq, wq) * gmm * s / 127 + sd[name + ".bias"]

    def lnf(name, x):
        return F.layer_norm(x, (C,), sd[name + ".weight"], sd[name + ".bias"], 1e-5)

    ids = torch.randint(0, V, (2, 20), generator=g)
    b, t = ids.shape
    h = F.embedding(ids, sd["wte.weight"]) + sd["wpe.weight"][:t]
    probs_all = []
    for i in range(L):
        p = f"h.{i}."
        qkv = bitlinear(p + "attn.c_attn", lnf(p + "ln_1", h))
        q, k, v = (z.view(b, t, H, D).transpose(1, 2) for z in qkv.split(C, dim=-1))
        sc = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        sc = sc.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        pr = torch.softmax(sc, -1)
        probs_all.append(pr)
        h = h + bitlinear(p + "attn.c_proj", (pr @ v).transpose(1, 2).reshape(b, t, C))
        h = h + bitlinear(p + "mlp.c_proj", F.gelu(bitlinear(p + "mlp.c_fc", lnf(p + "ln_2", h)), approximate="tanh"))
    logits = F.linear(lnf("ln_f", h), sd["wte.weight"])
    torch.save({"model": sd, "config": cfg, "iter_num": 0}, os.path.join(OUT, "gpt2_bitnet.pt"))
    save_ref("gpt2_bitnet", ids, {"logits": write_f32("gpt2_bitnet", "logits", logits),
                                  "attention": write_f32("gpt2_bitnet", "attention", torch.stack(probs_all))})
    print("gpt2_bitnet: logits range", float(logits.min()), float(logits.max()))


# --- a model with an induction head -------------------------------------------------------------

IND_CFG = dict(vocab_size=128, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
               intermediate_size=64, rope_theta=10000.0, attn_softcap=50.0, logit_softcap=30.0, init_std=0.02)


class MT19937_64:
    """std::mt19937_64, bit-exact: bitfsck's repeated-random probe draws its tokens from it."""
    N, M, MASK = 312, 156, (1 << 64) - 1

    def __init__(self, seed):
        self.mt = [seed & self.MASK]
        for i in range(1, self.N):
            self.mt.append((6364136223846793005 * (self.mt[-1] ^ (self.mt[-1] >> 62)) + i) & self.MASK)
        self.i = self.N

    def __call__(self):
        mt, n = self.mt, self.N
        if self.i >= n:
            for k in range(n):
                x = (mt[k] & 0xFFFFFFFF80000000) | (mt[(k + 1) % n] & 0x7FFFFFFF)
                mt[k] = mt[(k + self.M) % n] ^ (x >> 1) ^ (0xB5026F5AA96619E9 if x & 1 else 0)
            self.i = 0
        y = mt[self.i]
        self.i += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        return (y ^ (y >> 43)) & self.MASK


assert MT19937_64(5489).__call__() == 14514284786278117030  # the C++ standard's first value for the default seed


def probe_batch(batch=8, seq_len=64, vocab=128, seed=1234):
    """model/src/induction.cpp repeated_random_tokens for a model without BOS/EOS: id = draw % vocab."""
    g = MT19937_64(seed)
    rows = []
    for _ in range(batch):
        s = [g() % vocab for _ in range(seq_len)]
        rows.append(s + s)
    return torch.tensor(rows)


def ipmr_matrix(model, ids, quant=True):
    """IPMR per (layer, head) with bitfsck's definition, from the captured attention."""
    with torch.no_grad():
        _, probs = student_forward(model, ids, quant=quant)  # [L, B, H, T, T]
    L, B, H, T, _ = probs.shape
    hits, count = torch.zeros(L, H), 0
    for b in range(B):
        last, prev = {}, []
        for t in range(T):
            tok = int(ids[b, t])
            prev.append(last.get(tok, -1))
            last[tok] = t
        for t in range(T):
            j = prev[t]
            if j < 0 or j + 1 >= t:
                continue
            count += 1
            hits += (probs[:, b, :, t, :t + 1].argmax(-1) == j + 1).float()
    return (hits / count).tolist(), count


def forward_with_attention(model, ids):
    """StudentLLM.forward through its own modules (so BitLinear's STE quantizers apply when they are
    switched on), returning every layer's attention probabilities with the logits, for training."""
    cfg = model.cfg
    b, t = ids.shape
    cos, sin = ref.rope_cos_sin(t, cfg.head_dim, cfg.rope_theta)
    h = model.embed_tokens(ids)
    probs = []
    for layer in model.layers:
        a = layer.self_attn
        x = layer.input_layernorm(h)
        q = a.q_norm(a.q_proj(x).view(b, t, cfg.num_heads, cfg.head_dim)).transpose(1, 2)
        k = a.k_norm(a.k_proj(x).view(b, t, cfg.num_kv_heads, cfg.head_dim)).transpose(1, 2)
        v = a.v_proj(x).view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        q, k = ref.apply_rope(q, cos, sin), ref.apply_rope(k, cos, sin)
        rep = cfg.num_heads // cfg.num_kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(cfg.head_dim)
        scores = cfg.attn_softcap * torch.tanh(scores / cfg.attn_softcap)
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        p = torch.softmax(scores, dim=-1)
        probs.append(p)
        h = h + a.o_proj((p @ v).transpose(1, 2).reshape(b, t, -1))
        x = layer.post_attention_layernorm(h)
        m = layer.mlp
        h = h + m.down_proj(F.silu(m.gate_proj(x)) * m.up_proj(x))
    logits = F.linear(model.norm(h), model.embed_tokens.weight)
    return cfg.logit_softcap * torch.tanh(logits / cfg.logit_softcap), probs


def repeated_training_batch(gen, batch, vocab):
    """[r, r], r = n random tokens (repeats allowed; n in 16..64, so 2n <= the probe's 128 tokens), as
    the probe builds its rows. Returns the ids, the next-token loss mask (targets in the second copy)
    and, for every input position t, the induction target j + 1 (j: the most recent earlier
    occurrence of t's token, where j + 1 < t; else -1): the position bitfsck's IPMR counts as a hit."""
    n = int(torch.randint(16, 65, (1,), generator=gen))
    r = torch.randint(0, vocab, (batch, n), generator=gen)
    x = torch.cat([r, r], 1)
    t_in = 2 * n - 1
    target = torch.full((batch, t_in), -1, dtype=torch.long)
    for b in range(batch):
        last = {}
        for t in range(t_in):
            j = last.get(int(x[b, t]))
            if j is not None and j + 1 < t:
                target[b, t] = j + 1
            last[int(x[b, t])] = t
    mask = torch.zeros(batch, t_in, dtype=torch.bool)
    mask[:, n - 1:] = True
    return x, mask, target


IND_HEAD = (1, 0)  # (layer, head) whose attention is trained towards the induction target
IND_PHASES = [  # steps; the step from which BitLinear quantizes (STE); weight of the attention loss
    dict(steps=1200, quantize_from=900, attention_weight=1.0),
    dict(steps=500, quantize_from=1, attention_weight=3.0),
]


def make_induction():
    """A 2-layer student trained on repeated random sequences until layer 1 head 0 is an induction head.

    Loss: next-token cross entropy on the second copy, plus attention_weight × the cross entropy of
    head IND_HEAD's attention against the induction target (the position after the most recent
    earlier occurrence of the current token, the hit of bitfsck's IPMR). The language-model loss
    alone (tried: plain repeats, 2000 steps) makes all four layer-1 heads soft induction heads whose
    argmax hits only ~0.55-0.7 of the time: with RoPE, qk-norm and head_dim 16 their scores stay
    small, and with a 128-token vocabulary 39% of the probe's second-copy tokens occur twice in its
    prefix, where the correct continuation is not the most recent match. Training one head's
    attention gives a clear, single top head.
    Full precision first, then ternary QAT (BitLinear's straight-through estimator), so the head
    lives in the quantized forward that bitfsck runs by default; unquantized (--no-quant) the same
    weights score much lower (both are in induction.expected.json).
    Each phase: a fresh AdamW, lr 1e-3 with 100 warm-up steps, no weight decay, batch 16, the data
    generator seeded 6. ~7 minutes on one contended core with OpenBLAS (the Debian default, the
    reference BLAS, is ~4x slower); the weights depend on the BLAS in their last bits.
    """
    cfg = ref.ModelConfig(**IND_CFG)
    torch.manual_seed(5)
    fresh = ref.StudentLLM(cfg)
    torch.save({"model_state_dict": fresh.state_dict(), "config": {"model": cfg.to_dict()}},
               os.path.join(OUT, "induction_fresh.pt"))
    torch.manual_seed(5)
    model = ref.StudentLLM(cfg)
    probe = probe_batch()
    t0 = time.time()
    quantizers = ref.weight_quant, ref.activation_quant
    total, lm_loss, att_loss = 0, float("nan"), float("nan")
    for phase in IND_PHASES:
        ref.weight_quant = ref.activation_quant = lambda t: t
        gen = torch.Generator().manual_seed(6)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, betas=(0.9, 0.98))
        for step in range(1, phase["steps"] + 1):
            if step == phase["quantize_from"]:
                ref.weight_quant, ref.activation_quant = quantizers
            for g in opt.param_groups:
                g["lr"] = 1e-3 * min(1.0, step / 100)
            x, mask, target = repeated_training_batch(gen, 16, cfg.vocab_size)
            logits, probs = forward_with_attention(model, x[:, :-1])
            lm = F.cross_entropy(logits[mask], x[:, 1:][mask])
            p = probs[IND_HEAD[0]][:, IND_HEAD[1]]
            e = target >= 0
            att = -torch.log(p[e].gather(-1, target[e][:, None]).clamp_min(1e-9)).mean()
            loss = lm + phase["attention_weight"] * att
            opt.zero_grad()
            loss.backward()
            opt.step()
            lm_loss, att_loss = lm.item(), att.item()
            if step % 100 == 0:
                print(f"  induction: step {step}/{phase['steps']} lm loss {lm_loss:.3f} attention loss {att_loss:.3f} "
                      f"({time.time() - t0:.0f}s)", flush=True)
        total += phase["steps"]
    ref.weight_quant, ref.activation_quant = quantizers
    model.eval()
    torch.save({"model_state_dict": model.state_dict(), "step": total, "config": {"model": cfg.to_dict()}},
               os.path.join(OUT, "induction_trained.pt"))
    ipmr_q, count = ipmr_matrix(model, probe, quant=True)
    ipmr_f, _ = ipmr_matrix(model, probe, quant=False)
    exp = {"probe": {"name": "repeated_random", "batch": 8, "seq_len": 64, "seed": 1234, "bos": False,
                     "rng": "mt19937_64, id = draw % vocab_size (as model/src/induction.cpp)",
                     "eligible_positions": count, "input_ids": probe.tolist()},
           "trained": {"steps": total, "lm_loss": lm_loss, "attention_loss": att_loss,
                       "induction_head": {"layer": IND_HEAD[0], "head": IND_HEAD[1]}, "phases": IND_PHASES,
                       "optimizer": "AdamW lr 1e-3 (100 warm-up steps), betas (0.9, 0.98), no weight decay, batch 16",
                       "ipmr_quantized": ipmr_q, "ipmr": ipmr_f},
           "fresh": {"ipmr_quantized": ipmr_matrix(fresh.eval(), probe, quant=True)[0],
                     "ipmr": ipmr_matrix(fresh.eval(), probe, quant=False)[0]}}
    with open(os.path.join(OUT, "induction.expected.json"), "w") as f:
        json.dump(exp, f, indent=1)
    print(f"induction: {total} steps in {time.time() - t0:.0f}s; IPMR of layer {IND_HEAD[0]} head {IND_HEAD[1]}: "
          f"quantized {ipmr_q[IND_HEAD[0]][IND_HEAD[1]]:.3f}, unquantized {ipmr_f[IND_HEAD[0]][IND_HEAD[1]]:.3f}")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    which = sys.argv[1:] or ["student", "hf", "gpt2", "induction"]
    if "student" in which: make_student()
    if "hf" in which: make_hf()
    if "gpt2" in which: make_gpt2()
    if "induction" in which: make_induction()
