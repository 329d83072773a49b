"""A small decoder-only transformer in plain JAX: a config dataclass, init and forward.

Parameters are a nested dict of float32 arrays. The matrices (every parameter with two
or more dimensions: token and position embeddings, attention, MLP, unembedding) are what
the noise probe perturbs and what weight decay acts on; biases and LayerNorm parameters
are vectors and are left alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 128
    context: int = 32  # tokens the model sees
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    mlp_ratio: int = 4
    layernorm: bool = False  # pre-LayerNorm in every block and before the unembedding
    init_std: float = 0.02  # std of every matrix entry at init; biases start at 0, LN gains at 1

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        for name in ("vocab_size", "context", "d_model", "n_heads", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.n_layers < 0 or not self.init_std >= 0:
            raise ValueError("n_layers and init_std must be non-negative")


def init_params(cfg: GPTConfig, key) -> dict:
    d, f = cfg.d_model, cfg.mlp_ratio * cfg.d_model
    keys = iter(jax.random.split(key, 3 + 4 * cfg.n_layers))
    normal = lambda shape: cfg.init_std * jax.random.normal(next(keys), shape, jnp.float32)  # noqa: E731
    zeros = lambda n: jnp.zeros((n,), jnp.float32)  # noqa: E731
    norm = lambda: {"g": jnp.ones((d,), jnp.float32), "b": zeros(d)}  # noqa: E731

    params = {"wte": normal((cfg.vocab_size, d)), "wpe": normal((cfg.context, d)), "blocks": []}
    for _ in range(cfg.n_layers):
        block = {
            "attn": {"w_qkv": normal((d, 3 * d)), "b_qkv": zeros(3 * d), "w_o": normal((d, d)), "b_o": zeros(d)},
            "mlp": {"w_fc": normal((d, f)), "b_fc": zeros(f), "w_proj": normal((f, d)), "b_proj": zeros(d)},
        }
        if cfg.layernorm:
            block["ln1"], block["ln2"] = norm(), norm()
        params["blocks"].append(block)
    if cfg.layernorm:
        params["ln_f"] = norm()
    params["lm_head"] = normal((d, cfg.vocab_size))
    return params


def layer_norm(x, p, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * p["g"] + p["b"]


def attention(x, p, n_heads):
    b, t, d = x.shape
    q, k, v = jnp.split(x @ p["w_qkv"] + p["b_qkv"], 3, axis=-1)
    heads = lambda z: z.reshape(b, t, n_heads, d // n_heads).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = heads(q), heads(k), heads(v)
    scores = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(d // n_heads)
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    scores = jnp.where(causal, scores, -jnp.inf)
    y = jax.nn.softmax(scores, axis=-1) @ v
    y = y.transpose(0, 2, 1, 3).reshape(b, t, d)
    return y @ p["w_o"] + p["b_o"]


def mlp(x, p):
    return jax.nn.gelu(x @ p["w_fc"] + p["b_fc"]) @ p["w_proj"] + p["b_proj"]


def forward(params: dict, cfg: GPTConfig, tokens) -> jax.Array:
    """Next-token logits (B, T, V) for int tokens (B, T), T ≤ context."""
    t = tokens.shape[1]
    x = params["wte"][tokens] + params["wpe"][:t]
    norm = layer_norm if cfg.layernorm else (lambda z, _: z)
    for block in params["blocks"]:
        x = x + attention(norm(x, block.get("ln1")), block["attn"], cfg.n_heads)
        x = x + mlp(norm(x, block.get("ln2")), block["mlp"])
    x = norm(x, params.get("ln_f"))
    return x @ params["lm_head"]


def is_matrix(x) -> bool:
    return x.ndim >= 2


def count_params(params) -> int:
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


def flops_per_token(cfg: GPTConfig) -> float:
    """Forward FLOPs per token (2 per multiply-add in the matmuls, attention included)."""
    d, f, t = cfg.d_model, cfg.mlp_ratio * cfg.d_model, cfg.context
    per_layer = 2 * (3 * d * d + d * d + 2 * d * f) + 2 * 2 * t * d  # projections; QKᵀ and AV over the full T×T
    return cfg.n_layers * per_layer + 2 * d * cfg.vocab_size
