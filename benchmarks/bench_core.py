"""Core speed, measured side by side in one run on this machine (issue 12's targets).

    python benchmarks/bench_core.py [--quick] [--rounds N]

Prints, each against the obvious numpy program:

1. `linear-theory predict` over 2000 modes × 10⁵ and 10⁶ steps as a whole process
   (start-up, compilation with the compilation cache off, the sweep, output) against a
   numpy loop over steps that updates the vector of modes and keeps the minimum of the
   perturbed loss and each mode's learning step, also a whole process: wall time, CPU
   time and peak memory (ru_maxrss of that child, from os.wait4).
2. The fused sweep itself after compilation (in this process): mode-steps per second
   for a few block sizes (`_sweep.block_size` is tuned by this table).
3. Start-up: `import linear_theory`, `linear-theory --help` (best of 5 processes), and a
   small `predict` run with the persistent compilation cache cold and then warm.
4. Full-matrix GD at d_in = h = d_out = 256, 2000 steps, whole process
   (`linear-theory simulate`, cache off and warm) against a numpy loop process.
5. The fraction of the hardware limit: the peak is the float64 FLOP rate of the largest
   of a few square matmuls (jnp and numpy, n = 1024 and 2048, best of 5 after a warm-up,
   each timed to block_until_ready), which is what the GD step is made of (6n³ flops per
   step: W2W1, W2ᵀG, GW1ᵀ). The sweep does about 13 flops per mode-step (map 6, loss and
   the two sums 7), so its fraction is 13 × mode-steps/s / peak — an upper bound on what
   an elementwise loop can reach, since it cannot use FMA at the matmul's rate.

The machine is shared and its speed drifts (the same numpy loop has taken anywhere from 3 s to
6 s within an hour here): the whole-process comparisons run N interleaved rounds (numpy, then
each linear-theory variant, then again) and print medians, with each ratio taken within a
round and given as median [min–max] over rounds. The load average is printed first, and CPU
times next to wall times (CPU time is less sensitive to other processes on the same cores). Every
child process runs before this process imports JAX or numpy: a forked child's peak RSS
counts the parent's pages until it execs, so the parent stays small (≈ 10 MB) meanwhile.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NUMPY_LOOP = """
import sys, numpy as np
r, n = int(sys.argv[1]), int(sys.argv[2])
s = 1.0 / np.arange(1, r + 1)             # power:r:1:1
lr, sigma, a0, d_in, d_out, h = 0.5, 0.01, 1e-6, r, r, r
a = np.full(r, a0)
c = 0.5 * sigma**2 * (d_in + d_out)
const = 0.5 * sigma**4 * d_in * h * d_out
best, best_k = 0.5 * np.sum((a - s) ** 2) + c * np.sum(a) + const, 0
learned = np.full(r, -1)
for k in range(1, n + 1):
    a = a * (1.0 + lr * (s - a)) ** 2
    v = 0.5 * np.sum((a - s) ** 2) + c * np.sum(a) + const
    if v < best:
        best, best_k = v, k
    new = (learned < 0) & (a >= s / 2)
    learned[new] = k
print(best_k, best)
"""

NUMPY_GD = """
import sys, numpy as np
n, steps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
q = lambda k: np.linalg.qr(rng.standard_normal((n, k)))[0]
A = (q(n) * (1.0 / np.arange(1, n + 1))) @ q(n).T
W1 = 1e-3 * rng.standard_normal((n, n))
W2 = 1e-3 * rng.standard_normal((n, n))
for _ in range(steps):
    G = W2 @ W1 - A
    W1, W2 = W1 - 0.5 * (W2.T @ G), W2 - 0.5 * (G @ W1.T)
print(0.5 * np.sum((W2 @ W1 - A) ** 2))
"""


def run_process(args, env=None):
    """(wall s, CPU s, peak RSS MB) of one child process (its own rusage, via os.wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args} failed: {err[-500:]}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def rounds(size, reference, contenders, n_rounds):
    """Run the reference process and each contender in turn, n_rounds times (interleaved, so
    that a slow spell of the shared machine hits both sides), and print per process the
    median wall / CPU s and largest peak MB, and for each contender the median [min–max] over
    rounds of its wall time ÷ the reference's in the same round.

    reference: list of (label, short name, argv, env); contenders: list of (label, argv, env,
    prepare), prepare None or an argv run (untimed) before that round's timed run."""
    short = {label: name for label, name, *_ in reference}
    reference = [(label, argv, env, None) for label, _, argv, env in reference]
    results = {label: [] for label, *_ in reference + contenders}
    for _ in range(n_rounds):
        for label, argv, env, prepare in reference + contenders:
            if prepare is not None:
                run_process(prepare, env)
            results[label].append(run_process(argv, env))
    ref = {label: [x[0] for x in results[label]] for label, *_ in reference}
    for label, *_ in reference + contenders:
        res = results[label]
        note = ""
        if label not in ref:
            note = "; ".join(
                f"÷ {short[name]}: {_spread([x[0] / y for x, y in zip(res, walls)])}" for name, walls in ref.items())
        row(label, size, statistics.median(x[0] for x in res), statistics.median(x[1] for x in res),
            max(x[2] for x in res), note)


def _spread(values):
    return f"{statistics.median(values):.2f}× [{min(values):.2f}–{max(values):.2f}]"


def cli(*args):
    return [sys.executable, "-m", "linear_theory.cli", *args]


def row(name, size, wall, cpu, mem, note=""):
    print(f"{name:<44} {size:>14} {wall:>9.3f} {cpu:>9.3f} {mem:>9.0f}  {note}", flush=True)


def header(title):
    print(f"\n{title}\n{'':<44} {'size':>14} {'wall s':>9} {'CPU s':>9} {'peak MB':>9}", flush=True)


def peak_flops(quick):
    import jax
    import jax.numpy as jnp
    import numpy as np

    best = 0.0
    with jax.enable_x64(True):
        for n in (1024,) if quick else (1024, 2048):
            x = np.random.default_rng(0).standard_normal((n, n))
            xj = jnp.asarray(x)
            f = jax.jit(lambda a: a @ a)
            for fn in (lambda: f(xj).block_until_ready(), lambda: x @ x):
                fn()
                t = min(_timed(fn) for _ in range(5))
                best = max(best, 2 * n**3 / t)
    return best


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def matmul_ratio(n, trials=5, reps=100):
    """XLA's float64 n×n matmul rate over numpy's, per trial (interleaved, same process)."""
    import jax
    import numpy as np

    with jax.enable_x64(True):
        x = np.random.default_rng(0).standard_normal((n, n))
        xj = jax.device_put(x)
        loop = jax.jit(lambda a: jax.lax.fori_loop(0, reps, lambda i, b: (b @ a) * (1.0 / n), a))
        loop(xj).block_until_ready()
        out = []
        for _ in range(trials):
            t_np = _timed(lambda: [x @ x for _ in range(reps)])
            t_jx = _timed(lambda: loop(xj).block_until_ready())
            out.append(t_np / t_jx)
    return out


def sweep_rates(quick):
    """Mode-steps/s of the fused sweep after compilation, per block size."""
    import numpy as np

    import linear_theory._sweep as sw
    from linear_theory import Teacher, power_law_spectrum
    from linear_theory._predict import summarize_path

    r, n = 2000, (20_000 if quick else 200_000)
    t = Teacher(np.eye(r), power_law_spectrum(r), np.eye(r))
    blocks = (32, 64, 128, 256, 512)
    default = (sw.BLOCK, sw.BLOCK_BYTES)
    sw.BLOCK_BYTES = 2**40  # each size as asked (the default caps the buffer at 4 MiB)
    for block in blocks:  # compile each first
        sw.BLOCK = block
        summarize_path(t, 0.5, 100, 0.01, d_hidden=r)
    wall, cpu = ({b: [] for b in blocks} for _ in range(2))
    for _ in range(3):  # interleaved rounds: a slow spell of the machine hits every size
        for block in blocks:
            sw.BLOCK = block
            t0, c0 = time.perf_counter(), time.process_time()
            summarize_path(t, 0.5, n, 0.01, d_hidden=r)
            wall[block].append(time.perf_counter() - t0)
            cpu[block].append(time.process_time() - c0)
    sw.BLOCK, sw.BLOCK_BYTES = default
    return {b: (r * n / min(wall[b]), r * n / min(cpu[b])) for b in blocks}, sw.block_size(sw._bucket(r, 16))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved rounds of each whole-process comparison (default 3; 1 with --quick)")
    opts = ap.parse_args()
    if opts.rounds is not None and opts.rounds < 1:
        ap.error("--rounds must be at least 1")
    quick = opts.quick
    reps = opts.rounds or (1 if quick else 3)
    print(f"load average (1, 5, 15 min): {os.getloadavg()}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    off = {"LINEAR_THEORY_COMPILE_CACHE": "off"}

    # 1. predict, whole process, against the numpy loop.
    header(f"1. predict, 2000 modes, whole process vs numpy loop process ({reps} interleaved rounds: medians)")
    r = 2000
    warm = tempfile.mkdtemp(prefix="lt-bench-cache-")
    for n in ((10_000, 100_000) if quick else (100_000, 1_000_000)):
        args = ("predict", "--spectrum", f"power:{r}:1:1", "--d-in", str(r), "--d-out", str(r), "--d-hidden", str(r),
                "--lr", "0.5", "--sigma", "0.01", "--max-steps", str(n), "--json")
        fill = cli(*args[:-3], "--max-steps", "10", "--json", "--compile-cache", warm)  # compiles into the cache
        rounds(f"{r}×{n:.0e}", [("numpy loop (min of perturbed loss)", "numpy",
                                 [sys.executable, "-c", NUMPY_LOOP, str(r), str(n)], None)],
               [("linear-theory predict (cache off)", cli(*args), off, None),
                ("linear-theory predict (cache warm)", cli(*args, "--compile-cache", warm), None, fill)], reps)

    # 3. start-up.
    header("3. start-up (best of 5 processes)")
    for name, args in (("import linear_theory", [sys.executable, "-c", "import linear_theory"]),
                       ("linear-theory --help", cli("--help")),
                       ("import jax (what every computing command pays)", [sys.executable, "-c", "import jax"]),
                       ("import ml_dtypes (pinned <0.7: 0.7.0 took ~0.7 s)",
                        [sys.executable, "-c", "import ml_dtypes"])):
        runs = [run_process(args) for _ in range(5)]
        row(name, "", min(x[0] for x in runs), min(x[1] for x in runs), max(x[2] for x in runs))
    small = ("predict", "--singular-values", "2,1,0.5,0.2,0.1", "--sigma", "0.05", "--json")
    with tempfile.TemporaryDirectory() as cache:
        row("predict (5 modes, 2·10⁴ steps), cache off", "", *run_process(cli(*small), off))
        row("  same, cache cold (compiles and writes)", "", *run_process(cli(*small, "--compile-cache", cache)))
        row("  same, second identical run (cache warm)", "", *run_process(cli(*small, "--compile-cache", cache)))

        # 4. full-matrix GD.
        header("4. full-matrix GD, d_in = h = d_out = 256, whole process")
        n, steps = 256, (200 if quick else 2000)
        sim = ("simulate", "--d-in", str(n), "--d-hidden", str(n), "--d-out", str(n), "--spectrum",
               f"power:{n}:1:1", "--init", "random", "--init-std", "1e-3", "--lr", "0.5", "--checkpoints",
               str(steps), "--json")
        gd_cache = tempfile.mkdtemp(prefix="lt-bench-gd-cache-")
        fill = cli(*sim[:-2], "10", "--json", "--compile-cache", gd_cache)
        rounds(f"{n}³×{steps}", [("numpy loop", "numpy", [sys.executable, "-c", NUMPY_GD, str(n), str(steps)], None),
                                 ("numpy loop, one BLAS thread", "numpy 1 thread",
                                  [sys.executable, "-c", NUMPY_GD, str(n), str(steps)], {"OPENBLAS_NUM_THREADS": "1"})],
               [("linear-theory simulate (cache off)", cli(*sim), off, None),
                ("linear-theory simulate (cache warm)", cli(*sim, "--compile-cache", gd_cache), None, fill)], reps)

    # 2. the fused sweep after compilation.
    print("\n2. fused sweep after compilation, 2000 modes (in process; mode-steps/s, best of 3 interleaved rounds)")
    rates, chosen = sweep_rates(quick)
    for block, (w, c) in rates.items():
        mark = "  (the default for these 2000 modes, `_sweep.block_size`)" if block == chosen else ""
        print(f"   block = {block:>3} steps: {w:.3g} per wall s, {c:.3g} per CPU s{mark}")

    # 5. fraction of the hardware limit.
    peak = peak_flops(quick)
    print(f"\n5. peak: float64 matmul {peak:.3g} FLOP/s (max over jnp/numpy, n = 1024, 2048; best of 5)")
    rate = rates[chosen][0]
    print(f"   fused sweep (default block): 13 flops/mode-step × {rate:.3g} mode-steps/s = {13 * rate:.3g} FLOP/s = "
          f"{13 * rate / peak:.1%} of peak")
    import numpy as np

    from linear_theory import make_teacher, power_law_spectrum, simulate_gd

    t = make_teacher(power_law_spectrum(n), n, n)
    simulate_gd(t, n, 0.5, [steps], init="random", init_std=1e-3)
    dt = min(_timed(lambda: simulate_gd(t, n, 0.5, [steps], init="random", init_std=1e-3)) for _ in range(2))
    flops = 6 * n**3 * steps / dt
    print(f"   full GD scan (after compilation): {steps / dt:.3g} steps/s, {flops:.3g} FLOP/s = {flops / peak:.1%} of peak")
    ratios = matmul_ratio(n)
    print(f"   float64 {n}×{n} matmul, XLA (in a compiled loop) against numpy's BLAS, same process, 5 interleaved "
          f"trials: XLA runs at {np.median(ratios):.2f}× numpy's rate (trials {' '.join(f'{x:.2f}' for x in ratios)}); "
          "a GD step is three such products plus elementwise updates (numpy makes temporaries for those)")
    print(f"\nload average at the end: {os.getloadavg()}")
    del np


if __name__ == "__main__":
    main()
