"""Cost of the closed-form (Riccati) gradient flow against the time span, before and after.

    python benchmarks/bench_riccati.py

"before": the previous evaluation, which composed the closed form over sub-steps of
0.5/s_max (each step an eigh of an h × h matrix); its cost grows linearly with t.
"after": `riccati_flow`, one stable factored solve per f_max·Δt ≤ 300 (QR of a row-sorted
(h + d_in + d_out) × h matrix). Both from the same random balanced init, d_in = 24,
h = 20, d_out = 16, s = 2, 1.5, 1, 0.5; one time per call. Also prints the largest
difference of W2W1 between the two (they must agree).
"""

import time

import numpy as np

from linear_theory._lambda_balanced import lambda_balanced_init
from linear_theory._riccati import riccati_flow
from linear_theory._teacher import make_teacher


def composed_before(teacher, W1, W2, t, max_growth=0.5):
    """The previous algorithm (sub-steps, eigh-based factor update), for comparison."""
    d_in, A = teacher.d_in, teacher.matrix
    F = np.block([[np.zeros((d_in, d_in)), A.T], [A, np.zeros((teacher.d_out, teacher.d_out))]])
    f, E = np.linalg.eigh(F)
    n = int(np.ceil(t / (max_growth / teacher.s.max())))
    dt = t / n
    k = np.where(np.abs(f) * dt > 1e-8, np.expm1(2 * f * dt) / (2 * np.where(f == 0, 1, f)), dt * (1 + f * dt))
    expF, K = (E * np.exp(f * dt)) @ E.T, (E * k) @ E.T
    Q = np.concatenate([W1.T, W2])
    for _ in range(n):
        lam, S = np.linalg.eigh(np.eye(Q.shape[1]) + Q.T @ K @ Q)
        Q = expF @ Q @ (S / np.sqrt(lam)) @ S.T
    return Q[d_in:] @ Q[:d_in].T


def best_of(fn, repeats=3):
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    teacher = make_teacher([2.0, 1.5, 1.0, 0.5], 24, 16, seed=0)
    W1, W2 = lambda_balanced_init(teacher, 20, 0.0, "random", init_std=1e-3, seed=0)
    print(f"{'t':>8} {'before [ms]':>12} {'after [ms]':>11} {'speed-up':>9} {'max |ΔW2W1|':>12}")
    for t in (2.0, 20.0, 200.0, 2000.0, 20000.0):
        tb, Wb = best_of(lambda: composed_before(teacher, W1, W2, t))
        ta, sol = best_of(lambda: riccati_flow(teacher, W1, W2, [t]))
        diff = np.abs(sol.network_map[0] - Wb).max()
        print(f"{t:8g} {1e3 * tb:12.2f} {1e3 * ta:11.2f} {tb / ta:9.1f} {diff:12.2e}")


if __name__ == "__main__":
    main()
