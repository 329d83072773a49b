"""Core solver speed, measured side by side in one run on this machine.

    python benchmarks/bench_core.py [--quick]

Prints: closed-form evaluations per second (modes × times), exact GD-map steps per
second, full-matrix GD steps per second at n = 64 and 256 (d_in = h = d_out = n) for the
JAX scan and for a plain numpy loop, and the achieved FLOP/s of the JAX run as a fraction
of a large float64 jnp.dot's FLOP/s. One GD step costs 6n³ flops (W2W1, GW1ᵀ, W2ᵀG).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from linear_theory._closed_form import flow_strengths
from linear_theory._gd_full import simulate_gd
from linear_theory._gd_map import gd_modes
from linear_theory._teacher import make_teacher, power_law_spectrum


def best_of(fn, repeats=3):
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_flops(n=2048):
    with jax.enable_x64(True):
        a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)))
        f = jax.jit(lambda x: x @ x)
        t = best_of(lambda: f(a).block_until_ready())
    return 2 * n**3 / t


def numpy_gd(teacher, h, lr, steps, seed=0):
    rng = np.random.default_rng(seed)
    A = teacher.matrix
    W1 = 1e-3 * rng.standard_normal((h, teacher.d_in))
    W2 = 1e-3 * rng.standard_normal((teacher.d_out, h))
    for _ in range(steps):
        G = W2 @ W1 - A
        W1, W2 = W1 - lr * (W2.T @ G), W2 - lr * (G @ W1.T)
    return W1, W2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    q = ap.parse_args().quick
    rows = []

    modes, times = (100, 1000) if q else (1000, 10000)
    s = power_law_spectrum(modes)[None, :]
    t = np.linspace(0, 100, times)[:, None]
    dt = best_of(lambda: flow_strengths(s, 1e-6, t))
    rows.append(("closed form (numpy)", f"{modes}×{times}", modes * times / dt, "evaluations/s"))

    teacher = make_teacher(power_law_spectrum(100), 100, 100)
    n_steps = 10_000 if q else 1_000_000
    dt = best_of(lambda: gd_modes(teacher, 0.5, [n_steps]))
    rows.append(("exact GD map (jax scan, 100 modes)", f"{n_steps} steps", n_steps / dt, "steps/s"))

    peak = matmul_flops(1024 if q else 2048)
    rows.append(("large jnp.dot float64", "2048²" if not q else "1024²", peak, "FLOP/s"))
    for n, steps, np_steps in ((64, 20000, 2000), (256, 2000, 200)):
        if q:
            steps, np_steps = steps // 10, np_steps // 10
        teacher = make_teacher(power_law_spectrum(n), n, n)
        dt_jax = best_of(lambda: simulate_gd(teacher, n, 0.5, [steps], init="random", init_std=1e-3), repeats=2)
        dt_np = best_of(lambda: numpy_gd(teacher, n, 0.5, np_steps), repeats=2)
        sps_jax, sps_np = steps / dt_jax, np_steps / dt_np
        flops = 6 * n**3 * sps_jax
        rows.append((f"full GD n={n} (jax scan)", f"{steps} steps", sps_jax,
                     f"steps/s; {flops:.3g} FLOP/s = {flops / peak:.1%} of jnp.dot"))
        rows.append((f"full GD n={n} (numpy loop)", f"{np_steps} steps", sps_np,
                     f"steps/s; jax/numpy = {sps_jax / sps_np:.2f}×"))

    print(f"device: {jax.devices()[0]}, float64")
    w = max(len(r[0]) for r in rows)
    for name, size, rate, unit in rows:
        print(f"{name:<{w}}  {size:>16}  {rate:>12.4g}  {unit}")


if __name__ == "__main__":
    main()
