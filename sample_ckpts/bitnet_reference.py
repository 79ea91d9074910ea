"""Reference PyTorch implementation of the tiny ternary Llama-style model of sample_ckpts/run/.

The Distillix StudentLLM layout, small: every projection is a BitLinear (absmean ternary weights
and per-token absmax int8 activations, both with a straight-through estimator), q and k get a
per-head RMSNorm before RoPE, attention scores are soft-capped before the causal mask, the lm_head
is tied to the embedding and its logits are soft-capped too.

make_run.py trains it; bitfsck's C++ forward tests can import it as the reference:

    import sys; sys.path.insert(0, "sample_ckpts")
    import bitnet_reference as ref
    model, ckpt = ref.load_checkpoint("sample_ckpts/run/step_000350.pt")
    loss = ref.window_loss(model, ref.read_tokens("sample_ckpts/run/val.bin"), ckpt["config"]["seq_len"])

Only torch (1.13 has no rms_norm op and no scaled_dot_product_attention, so both are written out).
"""
import dataclasses
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclasses.dataclass
class ModelConfig:
    vocab_size: int = 256          # bytes
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2          # grouped-query attention: each kv head serves 2 q heads
    head_dim: int = 16
    intermediate_size: int = 172
    rope_theta: float = 1e6
    rms_norm_eps: float = 1e-6
    attn_softcap: float = 50.0
    logit_softcap: float = 30.0
    init_std: float = 0.02

    def to_dict(self):
        return dataclasses.asdict(self)


# --- quantizers ------------------------------------------------------------------------------

def weight_quant(w):
    """Absmean ternary (Distillix convention): gamma = mean|W| + 1e-8, Wq = clamp(round(W/gamma), -1, 1) * gamma.

    Straight-through estimator: the forward sees Wq, the backward treats the rounding as identity.
    torch.round rounds half to even.
    """
    gamma = w.abs().mean() + 1e-8
    wq = torch.clamp(torch.round(w / gamma), -1, 1) * gamma
    return w + (wq - w).detach()


def activation_quant(x):
    """Per-token absmax int8: s = 127 / max|x| over the last dim, xq = clamp(round(x*s), -128, 127) / s, with STE."""
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xq = torch.clamp(torch.round(x * s), -128, 127) / s
    return x + (xq - x).detach()


class BitLinear(nn.Linear):
    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x):
        return F.linear(activation_quant(x), weight_quant(self.weight))


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


# --- RoPE (rotate-half convention, as Llama / Hugging Face) ----------------------------------

def rope_cos_sin(seq_len, head_dim, theta, dtype=torch.float32):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)  # [T, head_dim]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):  # x: [B, H, T, D]
    return x * cos + rotate_half(x) * sin


# --- the model -------------------------------------------------------------------------------

class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h, d = cfg.hidden_size, cfg.head_dim
        self.q_proj = BitLinear(h, cfg.num_heads * d)
        self.k_proj = BitLinear(h, cfg.num_kv_heads * d)
        self.v_proj = BitLinear(h, cfg.num_kv_heads * d)
        self.o_proj = BitLinear(cfg.num_heads * d, h)
        self.q_norm = RMSNorm(d, cfg.rms_norm_eps)  # per head, over head_dim
        self.k_norm = RMSNorm(d, cfg.rms_norm_eps)

    def forward(self, x, cos, sin):
        cfg = self.cfg
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, t, cfg.num_heads, cfg.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, t, cfg.num_kv_heads, cfg.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = cfg.num_heads // cfg.num_kv_heads
        k = k.repeat_interleave(rep, dim=1)  # q head i uses kv head i // rep
        v = v.repeat_interleave(rep, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(cfg.head_dim)
        scores = cfg.attn_softcap * torch.tanh(scores / cfg.attn_softcap)  # soft-cap, then mask
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v  # [B, H, T, D]
        return self.o_proj(out.transpose(1, 2).reshape(b, t, cfg.num_heads * cfg.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = BitLinear(cfg.hidden_size, cfg.intermediate_size)
        self.up_proj = BitLinear(cfg.hidden_size, cfg.intermediate_size)
        self.down_proj = BitLinear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # SwiGLU


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, h, cos, sin):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class StudentLLM(nn.Module):
    """State dict keys: embed_tokens.weight, layers.{i}.…, norm.weight (lm_head tied: no key)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=cfg.init_std)

    def forward(self, ids):
        cos, sin = rope_cos_sin(ids.shape[1], self.cfg.head_dim, self.cfg.rope_theta)
        h = self.embed_tokens(ids)
        for layer in self.layers:
            h = layer(h, cos, sin)
        logits = F.linear(self.norm(h), self.embed_tokens.weight)  # tied lm_head, not quantized
        return self.cfg.logit_softcap * torch.tanh(logits / self.cfg.logit_softcap)


# --- data and evaluation ---------------------------------------------------------------------

def read_tokens(path):
    """uint16 little-endian token ids (nanoGPT's .bin layout) as an int64 tensor."""
    return torch.from_numpy(np.fromfile(path, dtype="<u2").astype(np.int64))


def val_offsets(n_tokens, seq_len):
    """Fixed evaluation windows: every non-overlapping window of seq_len+1 tokens, from the start."""
    return list(range(0, n_tokens - seq_len, seq_len))  # o + seq_len + 1 <= n_tokens


@torch.no_grad()
def window_loss(model, tokens, seq_len, batch=64):
    """Mean next-token cross entropy (nats) over the fixed windows, all targets weighted equally."""
    was_training = model.training
    model.eval()
    offs = val_offsets(len(tokens), seq_len)
    total, count = 0.0, 0
    for i in range(0, len(offs), batch):
        x = torch.stack([tokens[o:o + seq_len] for o in offs[i:i + batch]])
        y = torch.stack([tokens[o + 1:o + seq_len + 1] for o in offs[i:i + batch]])
        logits = model(x)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


def load_checkpoint(path):
    """(model, checkpoint dict) from a run/step_*.pt file."""
    ckpt = torch.load(path)
    cfg = ModelConfig(**ckpt["config"]["model"])
    model = StudentLLM(cfg)
    model.load_state_dict(ckpt["model_state_dict"])
    return model, ckpt
