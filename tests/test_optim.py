"""optax training (`_optim`): a few steps against hand-written updates, SAM against two
explicit gradients, sign descent against its closed form, the recorded noise and curvature
quantities against the package's independent formulas."""

import numpy as np
import pytest

from linear_theory import expected_perturbed_loss, hessian_trace, make_teacher
from linear_theory._gd_full import init_weights
from linear_theory._optim import axis_teacher, sign_descent_modes, train_optax
from linear_theory._stability import fixed_point_sharpness


@pytest.fixture(scope="module")
def small():
    t = make_teacher([1.0, 0.5, 0.2], d_in=4, d_out=3, seed=1)
    return t, init_weights(t, 3, "random", init_std=0.3, seed=2)


def _grads(W1, W2, A):
    E = W2 @ W1 - A
    return W2.T @ E, E @ W1.T


def _hand(t, W, name, lr, n, **kw):
    """n steps of the textbook update rules, in numpy."""
    W1, W2 = (np.array(w) for w in W)
    m = [np.zeros_like(W1), np.zeros_like(W2)]
    v = [np.zeros_like(W1), np.zeros_like(W2)]
    b1, b2, eps, beta = 0.9, 0.999, 1e-8, kw.get("momentum", 0.9)
    for k in range(1, n + 1):
        g = _grads(W1, W2, t.matrix)
        if name == "momentum":
            m = [beta * mi + gi for mi, gi in zip(m, g)]
            step = [lr * mi for mi in m]
        elif name == "adam":
            m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
            v = [b2 * vi + (1 - b2) * gi**2 for vi, gi in zip(v, g)]
            step = [lr * (mi / (1 - b1**k)) / (np.sqrt(vi / (1 - b2**k)) + eps) for mi, vi in zip(m, v)]
        elif name == "sign":
            step = [lr * np.sign(gi) for gi in g]
        elif name == "sam":
            norm = np.sqrt(sum(np.sum(gi**2) for gi in g))
            rho = kw["rho"]
            ga = _grads(W1 + rho * g[0] / norm, W2 + rho * g[1] / norm, t.matrix)
            step = [lr * gi for gi in ga]
        W1, W2 = W1 - step[0], W2 - step[1]
    return W1, W2


@pytest.mark.parametrize("name,kw", [("momentum", {}), ("adam", {}), ("sign", {}), ("sam", {"rho": 0.05})])
def test_optax_steps_match_hand_written_updates(small, name, kw):
    """Four steps (SAM: each with its adversarial gradient at W + ρ g/‖g‖) equal the textbook
    rules written in numpy to round-off (rtol 1e-12 on O(0.1–1) weights)."""
    t, W = small
    run = train_optax(t, 3, name, 0.05, 4, weights=W, checkpoints=[4], **kw)
    want = _hand(t, W, name, 0.05, 4, **kw)
    np.testing.assert_allclose(run.W1[0], want[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(run.W2[0], want[1], rtol=1e-12, atol=1e-14)


def test_recorded_noise_and_curvature(small):
    """Every-step E[L_pert] and tr(H) equal the any-weights formulas on the checkpoint
    weights; at the balanced fixed point (long SGD from aligned init) the top Hessian
    eigenvalue is the stability analysis' 2 s_max."""
    t, _ = small
    run = train_optax(t, 3, "sgd", 0.2, 3000, sigmas=[0.03, 0.1], init_strength=1e-3, checkpoints=[10, 3000])
    for j, k in enumerate(run.checkpoint_steps):
        np.testing.assert_allclose(run.expected_perturbed_loss[:, k],
                                   [expected_perturbed_loss(run.W1[j], run.W2[j], t, s) for s in (0.03, 0.1)],
                                   rtol=1e-12)
        np.testing.assert_allclose(run.hessian_trace[k], hessian_trace(run.W1[j], run.W2[j], teacher=t), rtol=1e-12)
    np.testing.assert_allclose(run.sharpness[-1], fixed_point_sharpness(t, 3), rtol=1e-8)


def test_sign_descent_closed_form():
    """Axis-aligned teacher, R = I: a_k = (√a0 + ηk)² per mode until it reaches s (exact up to
    round-off of the repeated additions, rtol 1e-12)."""
    s = np.array([1.0, 0.25])
    t = axis_teacher(s, 3, 3)
    a0, lr = 1e-4, 1e-2
    W1 = np.zeros((2, 3))
    W2 = np.zeros((3, 2))
    W1[[0, 1], [0, 1]] = W2[[0, 1], [0, 1]] = np.sqrt(a0)
    run = train_optax(t, 2, "sign", lr, 120, weights=(W1, W2), checkpoints=[120])
    k = np.arange(121)
    want = sign_descent_modes(s, a0, lr, k)
    before = want < s  # up to the crossing
    np.testing.assert_allclose(run.mode_strengths[before], want[before], rtol=1e-12)
    assert run.learning_steps(s)[0] == int(np.ceil((np.sqrt(0.5) - np.sqrt(a0)) / lr))


def test_cli_sgd_turn_is_the_exact_map_turn(run_cli):
    """`optimizers` with sgd from the aligned init runs the exact per-mode GD map in another
    basis: its turn and learning steps are those of `predict` (fused sweep), exactly."""
    import json

    from linear_theory import predict

    common = ["--d-in", "6", "--d-hidden", "4", "--d-out", "5", "--singular-values", "1,0.5,0.2,0.1",
              "--lr", "0.1", "--sigma", "0.15", "--max-steps", "600", "--init-strength", "1e-4"]
    code, out, err = run_cli(["optimizers", *common, "--optimizers", "sgd", "--hessian-checkpoints", "0", "--json"])
    assert code == 0, err
    got = json.loads(out)["optimizers"]["sgd"]
    t = make_teacher([1, 0.5, 0.2, 0.1], 6, 5, seed=0)
    p = predict(t, 0.1, 0.15, 600, 1e-4, 4)
    assert got["turn_step"] == p.inflection_step
    assert got["mode_learning_steps"] == p.mode_learning_steps
    np.testing.assert_allclose(got["min_expected_perturbed_loss"], p.min_expected_perturbed_loss, rtol=1e-10)
    code, out, err = run_cli(["optimizers", *common, "--label-noise", "0.1"])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_minibatch_gradient_is_unbiased(small):
    """Sampled inputs (and label noise) estimate the population gradient: with B = 40000 the
    weights after 3 SGD steps agree with population SGD to O(1/√B) ≈ 0.5% of the update;
    a mis-scaled loss (a factor 2, a missing 1/B) would be off by O(1)."""
    t, W = small
    pop = train_optax(t, 3, "sgd", 0.2, 3, weights=W, checkpoints=[3])
    mb = train_optax(t, 3, "sgd", 0.2, 3, weights=W, checkpoints=[3], batch_size=40000, label_noise=0.5)
    moved = np.linalg.norm(pop.W1[0] - W[0])
    assert np.linalg.norm(mb.W1[0] - pop.W1[0]) < 0.03 * moved


def test_coupled_weight_decay_is_simulate_gd(small):
    """optax sgd with weight decay (λ1 = λ2) is GD on L + (λ/2)‖W‖², as in simulate_gd."""
    from linear_theory import simulate_gd

    t, W = small
    run = train_optax(t, 3, "sgd", 0.1, 50, weights=W, checkpoints=[50], weight_decay=0.2)
    ref = simulate_gd(t, 3, 0.1, [50], W1=W[0], W2=W[1], weight_decay=0.2, record_weights=True)
    np.testing.assert_allclose(run.W1[0], ref.W1[0], rtol=1e-12, atol=1e-14)
