"""Item 1 and 2 of the audit: the learning-rate limit with co-diagonal inputs, and the best
rank-h fixed point in the input metric. Checked against jax.hessian and against long
full-matrix GD written here in plain numpy (independent of the package's JAX solver)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linear_theory._closed_form import gradient_flow
from linear_theory._fixed_point import fixed_point_strengths, kept_modes
from linear_theory._gd_full import init_weights, simulate_gd
from linear_theory._gd_map import check_lr, gd_modes
from linear_theory._stability import fixed_point_sharpness, stability_limit
from linear_theory._teacher import make_teacher


def numpy_gd(teacher, W1, W2, lr, steps):
    """Plain full-matrix GD on ½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ); None if it overflows."""
    A, Sx = teacher.matrix, teacher.input_covariance
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            G = (W2 @ W1 - A) @ Sx
            W1, W2 = W1 - lr * W2.T @ G, W2 - lr * G @ W1.T
            if not np.all(np.isfinite(W1)):
                return None
    return W1, W2


def loss(teacher, W1, W2):
    E = W2 @ W1 - teacher.matrix
    return 0.5 * np.sum((E @ teacher.input_covariance) * E)


def strengths(teacher, W1, W2):
    return np.sum(teacher.U * (W2 @ W1 @ teacher.V), axis=0)


def hessian_eigs(teacher, h):
    """A function (W1, W2) -> eigenvalues of the jax.hessian of L in (vec W1, vec W2)."""
    d_in = teacher.d_in

    def L(w):
        w1 = w[: h * d_in].reshape(h, d_in)
        w2 = w[h * d_in :].reshape(-1, h)
        E = w2 @ w1 - teacher.matrix
        return 0.5 * jnp.sum((E @ teacher.input_covariance) * E)

    hess = jax.jit(jax.hessian(L))

    def eigs(W1, W2):
        with jax.enable_x64(True):
            w = jnp.concatenate([jnp.asarray(W1).ravel(), jnp.asarray(W2).ravel()])
            return np.linalg.eigvalsh(np.asarray(hess(w)))

    return eigs


CASES = [
    # (singular values, input variances, d_in, d_out, h)
    ([1.0, 0.8, 0.5], None, 5, 4, 3),
    ([1.0, 0.8, 0.5], [0.3, 3.0, 1.0], 5, 4, 3),  # cross term d_2(a_1 + a_2) dominates
    ([1.0, 0.8, 0.5], [0.3, 3.0, 1.0], 3, 4, 3),  # no input direction outside span V
    ([1.0, 0.8, 0.5, 0.3], [9.0, 0.5, 1.0, 2.0], 6, 5, 2),  # h < r; an unlearned high-variance mode
]


@pytest.mark.parametrize("s, d, d_in, d_out, h", CASES)
def test_sharpness_formula_against_jax_hessian(s, d, d_in, d_out, h):
    """λ_max at the balanced fixed point by the block formula (eigvalsh of jax.hessian, to
    1e-10 relative: a dense 30-dim eigenproblem in float64); along the path a = f × fixed point,
    0 ≤ f ≤ 1, the Hessian's largest eigenvalue never exceeds it."""
    t = make_teacher(s, d_in, d_out, seed=0, input_variances=d)
    a_star = fixed_point_strengths(t, h)
    lam = fixed_point_sharpness(t, h)
    eigs = hessian_eigs(t, h)
    W1, W2 = init_weights(t, h, "aligned", a_star, seed=1)
    assert eigs(W1, W2).max() == pytest.approx(lam, rel=1e-10)
    for f in (1e-3, 0.2, 0.5, 0.8, 0.95):
        W1, W2 = init_weights(t, h, "aligned", f * a_star, seed=1)
        assert eigs(W1, W2).max() <= lam * (1 + 1e-10)
    if d is None:
        assert stability_limit(t, h) == pytest.approx(1 / max(s))


def test_whitened_gd_converges_below_the_limit_and_not_above():
    """Whitened: 0.9 × limit converges (loss < 1e-20 in 3000 steps: the slowest factor per
    step near the fixed point is 1 − 2η s_min ≈ 0.1); at 1.1 × the fixed point is unstable
    (|1 − ηλ| = 1.2) and GD oscillates at a loss ≥ 1e-3 or overflows."""
    t = make_teacher([1.0, 0.8, 0.5], 5, 4, seed=0)
    lim = stability_limit(t, 3)
    for seed in range(2):
        W1, W2 = init_weights(t, 3, "random", init_std=1e-3, seed=seed)
        below = numpy_gd(t, W1, W2, 0.9 * lim, 3000)
        assert loss(t, *below) < 1e-20
        above = numpy_gd(t, W1, W2, 1.1 * lim, 3000)
        assert above is None or loss(t, *above) > 1e-3


@pytest.mark.parametrize("init", ["aligned", "random"])
def test_codiagonal_gd_stays_balanced_below_the_limit_and_leaves_above(init):
    """Co-diagonal inputs: at 0.9 × the limit full GD converges to the balanced fixed point the
    theory predicts (‖W1‖² = ‖W2‖² = Σ a_i to 1e-3; GD's O(η²) drift of W1W1ᵀ − W2ᵀW2 from a
    1e-3 init is ~1e-4); at 1.1 × (still far below the old limit 1/s_max = 1) the balanced
    fixed point is unstable and GD either diverges or ends on an unbalanced minimum, with
    imbalance ≥ 10 % of Σ a_i (measured 25 %), where ‖W1‖² is off the prediction."""
    t = make_teacher([1.0, 0.8, 0.5], 5, 4, seed=0, input_variances=[0.3, 3.0, 1.0])
    lim = stability_limit(t, 3)
    assert lim < 0.2  # the old check (lr·s_max < 1) accepted every rate up to 1
    total = fixed_point_strengths(t, 3).sum()
    W1, W2 = init_weights(t, 3, init, 1e-6, init_std=1e-3, seed=0)
    W1b, W2b = numpy_gd(t, W1, W2, 0.9 * lim, 3000)
    np.testing.assert_allclose(strengths(t, W1b, W2b), t.targets, rtol=1e-10)
    np.testing.assert_allclose([np.sum(W1b**2), np.sum(W2b**2)], total, rtol=1e-3)
    above = numpy_gd(t, W1, W2, 1.1 * lim, 3000)
    if above is not None:
        W1a, W2a = above
        assert np.linalg.norm(W1a @ W1a.T - W2a.T @ W2a) > 0.1 * total
        assert abs(np.sum(W1a**2) - total) > 0.05 * total


def test_check_lr_refuses_beyond_the_limit(run_cli):
    t = make_teacher([1.0, 0.8, 0.5], 5, 4, seed=0, input_variances=[0.3, 3.0, 1.0])
    lim = stability_limit(t, 3)
    check_lr(t, 0.99 * lim, 3)
    with pytest.raises(ValueError, match="stability limit"):
        check_lr(t, 1.01 * lim, 3)
    with pytest.raises(ValueError, match="stability limit"):
        simulate_gd(t, 3, 1.01 * lim, [10])
    base = ["simulate", "--d-in", "5", "--d-out", "4", "--d-hidden", "3", "--singular-values", "1,0.8,0.5",
            "--input-variances", "0.3,3,1", "--checkpoints", "0,10", "--json"]
    code, out, err = run_cli(base + ["--lr", f"{1.01 * lim:.6f}"])
    assert code == 2 and out == "" and "stability limit" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run_cli(base + ["--lr", f"{0.99 * lim:.6f}"])
    assert code == 0


# ----------------------------------------------------------------- best rank-h fixed point

FIXED_POINT_CASES = [
    # unsorted whitened: a width-2 network keeps the two largest, s = 2 and 1.5 (modes 1, 3)
    ([0.5, 2.0, 1.0, 1.5], None, [False, True, False, True]),
    # variances reorder the modes: s/√d = 0.67, 2.1, 1, 0.35 → modes 1 and 2, not 0 and 1
    ([2.0, 1.5, 1.0, 0.5], [9.0, 0.5, 1.0, 2.0], [False, True, True, False]),
]


@pytest.mark.parametrize("s, d, expected", FIXED_POINT_CASES)
def test_best_rank_h_fixed_point_against_long_numpy_gd(s, d, expected):
    """t = inf of every solver equals where a long plain-numpy full GD from a random init
    ends (strengths to 1e-6: the modes left out decay like the gap to the kept ones, the run
    is 20 000 steps at 0.8 × the limit), and the loss there is ½ Σ_{left out} s_i²/d_i."""
    t = make_teacher(s, 7, 6, seed=2, input_variances=d)
    h = 2
    np.testing.assert_array_equal(kept_modes(t, h), expected)
    a_inf = fixed_point_strengths(t, h)
    lr = 0.8 * stability_limit(t, h)
    W1, W2 = init_weights(t, h, "random", init_std=1e-3, seed=3)
    W1, W2 = numpy_gd(t, W1, W2, lr, 20000)
    np.testing.assert_allclose(strengths(t, W1, W2), a_inf, atol=1e-6)
    left_out = ~np.asarray(expected)
    best = 0.5 * np.sum(t.s[left_out] ** 2 / t.variances[left_out])
    assert loss(t, W1, W2) == pytest.approx(best, rel=1e-6)
    for traj in (simulate_gd(t, h, lr, [np.inf], init="random", init_std=1e-3),
                 simulate_gd(t, h, lr, [np.inf]), gd_modes(t, lr, [np.inf], d_hidden=h),
                 gradient_flow(t, [np.inf], d_hidden=h)):
        np.testing.assert_allclose(traj.mode_strengths[-1], strengths(t, W1, W2), atol=1e-6)
        assert traj.loss[-1] == pytest.approx(best, rel=1e-6)
    # The aligned init sits on the kept modes, so the exact map reaches the same point.
    long = gd_modes(t, lr, [20000], d_hidden=h)
    np.testing.assert_allclose(long.mode_strengths[0], a_inf, rtol=1e-10)
