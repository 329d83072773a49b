"""Toy-transformer training speed for each preset, on whatever device JAX sees.

    python benchmarks/bench_transformer.py [--presets ci,default,gpu] [--seconds 10]

For each preset and variant: pre-training steps per second and tokens per second (batch ×
context per step) through the jitted scan chunk that `linear-theory transformer` uses
(batch sampling on device included), and the achieved FLOP/s as a fraction of a large
float32 matmul's FLOP/s on the same device (the better of a measurement before and one after). A training step counts 3 × the forward FLOPs
(backward ≈ 2 × forward) of the matmuls, attention's QKᵀ and AV over the full T×T included;
sampling, softmax and the optimiser are not counted. On a CPU the gpu preset is timed
over a few steps only.
"""

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp

from experiments.model import count_params, flops_per_token
from experiments.presets import get_preset
from experiments.run import languages
from experiments.train import init_state, make_chunk_fn


def matmul_flops(n):
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def train_speed(cfg, seconds):
    """(steps/s, compile seconds) of the training chunk for config `cfg`."""
    tables = languages(cfg)[0].tables()
    state = init_state(cfg.model, cfg.train, jax.random.key(0))
    fn = make_chunk_fn(cfg.model, cfg.train)
    key, stop = jax.random.key(1), jnp.asarray(2**30, jnp.int32)
    t0 = time.perf_counter()
    state, loss = fn(state, tables, key, stop)
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t0 < seconds:
        state, loss = fn(state, tables, key, stop)
        loss.block_until_ready()
        n += cfg.train.chunk
    return n / (time.perf_counter() - t0), compile_s, count_params(state.params)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="ci,default,gpu", help="comma-separated presets (default ci,default,gpu)")
    ap.add_argument("--seconds", type=float, default=10.0, help="timing window per preset and variant (default 10)")
    args = ap.parse_args()
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    n = 2048 if on_cpu else 8192
    peak = matmul_flops(n)
    rows = []
    for preset in args.presets.split(","):
        for variant in ("theory", "realistic"):
            cfg = get_preset(preset, variant)
            if preset == "gpu" and on_cpu:  # a few steps are enough to time it
                cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, chunk=2))
            sps, compile_s, n_params = train_speed(cfg, args.seconds)
            tokens = cfg.train.batch_size * cfg.model.context
            flops = 3 * flops_per_token(cfg.model) * tokens * sps
            rows.append((f"{preset}/{variant}", n_params, tokens, sps, sps * tokens, flops, compile_s))
    peak = max(peak, matmul_flops(n))  # measured before and after: the better one, on a shared machine
    print(f"device: {device} ({device.device_kind}); float32 jnp.dot {n}²: {peak:.3g} FLOP/s (best of before/after)")
    head = ("preset/variant", "params", "tok/step", "steps/s", "tokens/s", "FLOP/s", "of matmul", "compile s")
    print(f"{head[0]:<18}" + "".join(f"{h:>11}" for h in head[1:]))
    for r in rows:
        print(f"{r[0]:<18}{r[1]:>11d}{r[2]:>11d}{r[3]:>11.3g}{r[4]:>11.3g}{r[5]:>11.3g}{r[5] / peak:>11.1%}{r[6]:>11.1f}")


if __name__ == "__main__":
    main()
