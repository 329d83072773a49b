"""Fine-tuning as a perturbation (THEORY.md §5)."""

import numpy as np
import pytest

from linear_theory import make_teacher, power_law_spectrum, simulate_gd
from linear_theory._finetune import finetune_sweep, finetune_target
from linear_theory._phase import log_steps

T = log_steps(10000, 20)


@pytest.fixture(scope="module")
def setup():
    t = make_teacher(power_law_spectrum(16, 1.0, 1.0), 24, 16, seed=0)
    B = finetune_target(t, "rank", 1.0, 4, seed=1)
    return t, B


def sweep(setup, lr_ft, l2=0.0, K=50):
    t, B = setup
    return finetune_sweep(t, B, 20, 0.2, T, lr_ft, K, l2)


def test_targets(setup):
    t, B = setup
    np.testing.assert_allclose(np.linalg.svd(B - t.matrix, compute_uv=False)[:5], [1, 1, 1, 1, 0], atol=1e-12)
    t3 = make_teacher([3.0, 2.0, 1.0], 9, 7, seed=0)
    R = finetune_target(t3, "rotate", np.pi / 6, seed=2)
    # Rotation keeps the singular values and turns every singular vector by 30°.
    U, s, Vt = np.linalg.svd(R)
    np.testing.assert_allclose(s[:3], t3.s, rtol=1e-10)
    np.testing.assert_allclose(np.abs(np.sum(U[:, :3] * t3.U, 0)), np.cos(np.pi / 6), rtol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(Vt[:3].T * t3.V, 0)), np.cos(np.pi / 6), rtol=1e-8)
    with pytest.raises(ValueError):
        finetune_target(t, "shear", 1.0)
    with pytest.raises(ValueError):
        finetune_target(make_teacher([1, 1, 1], 4, 4), "rotate", 0.1)  # 4 < 2·3


def test_large_rate_gives_a_u_and_small_rate_does_not(setup):
    small = sweep(setup, 0.005)
    large = sweep(setup, 0.05)
    la_small, la_large = small.pretrain_loss_after, large.pretrain_loss_after
    # Small rate: L_A after fine-tuning falls with pre-training; what it gives back at the
    # end is under 1% of its minimum (measured: 0.07%), against > 50% at the large rate.
    assert la_small[-1] - la_small.min() < 0.01 * la_small.min()
    assert la_small[-1] < 0.05 * la_small[0]
    # Large rate: an interior minimum and a rise far above it (deterministic, no noise).
    assert large.turning_is_interior
    k = int(np.argmin(la_large))
    assert la_large[-1] - la_large[k] > 0.5 * la_large[k]
    assert np.all(np.diff(la_large[:k + 1]) <= 1e-9)  # falls, then …
    assert la_large[-1] > la_large[k] + 0.1  # … turns up
    # L_B after fine-tuning still improves with pre-training at the large rate.
    assert large.finetune_loss_after[-1] < large.finetune_loss_after[0]


def test_l2_delays_or_removes_the_turn_and_raises_lb(setup):
    for lr_ft in (0.05, 0.1):
        free = sweep(setup, lr_ft)
        tied = sweep(setup, lr_ft, l2=1.0)
        later = tied.turning_step > free.turning_step or not tied.turning_is_interior
        assert later, (free.turning_step, tied.turning_step)
        assert tied.finetune_loss_after[-1] > free.finetune_loss_after[-1]
        rise_free = free.pretrain_loss_after[-1] - free.pretrain_loss_after.min()
        rise_tied = tied.pretrain_loss_after[-1] - tied.pretrain_loss_after.min()
        assert rise_tied < rise_free


def test_first_order_function_change(setup):
    """ΔF ≈ −η K (W2W2ᵀG + G W1ᵀW1): the relative error is O(ηK‖H‖), so it halves when
    η halves, and is small for small ηK."""
    errs = []
    for lr_ft in (0.002, 0.001, 0.0005):
        r = sweep(setup, lr_ft, K=5)
        late = r.pretrain_steps > 1000
        errs.append(r.delta_f_first_order_rel_error[late].max())
    assert errs[-1] < 0.02
    np.testing.assert_allclose(errs[0] / errs[1], 2, rtol=0.1)
    np.testing.assert_allclose(errs[1] / errs[2], 2, rtol=0.1)


def test_finetune_matches_continued_gd(setup):
    """Fine-tuning with B = A and λ = 0 is just more pre-training: it matches simulate_gd
    run for T + K steps at the fine-tuning rate when both rates are equal."""
    t, _ = setup
    r = finetune_sweep(t, t.matrix, 20, 0.2, [0, 37, 200], 0.2, 13)
    direct = simulate_gd(t, 20, 0.2, [13, 50, 213])
    np.testing.assert_allclose(r.pretrain_loss_after, direct.loss, rtol=1e-9, atol=1e-25)


def test_bad_input(setup):
    t, B = setup
    for kw in (dict(finetune_lr=-1.0), dict(finetune_steps=0), dict(finetune_l2=-0.1)):
        args = dict(finetune_lr=0.1, finetune_steps=5, finetune_l2=0.0) | kw
        with pytest.raises(ValueError):
            finetune_sweep(t, B, 20, 0.2, [0, 10], **args)
    with pytest.raises(ValueError):
        finetune_sweep(t, B[:3], 20, 0.2, [0, 10], 0.1, 5)


def test_finetune_grid_rows_are_finetune_runs(run_cli):
    """Every row of `finetune-grid` is the `finetune` run with those knobs (same L_A, L_B and
    turn); the grid is the full product of the lists."""
    import json

    common = ["--d-in", "6", "--d-hidden", "4", "--d-out", "5", "--singular-values", "1,0.5,0.2,0.1",
              "--lr", "0.1", "--pretrain-steps", "0,30,100,300,1000", "--change-rank", "2", "--json"]
    code, out, err = run_cli(["finetune-grid", *common, "--finetune-lr", "0.05,0.2", "--finetune-steps", "5,20",
                              "--finetune-l2", "0,0.5", "--pretrain-schedules", "constant,cosine"])
    assert code == 0, err
    grid = json.loads(out)["grid"]
    assert len(grid) == 2 * 2 * 2 * 2
    row = next(g for g in grid if (g["schedule"], g["finetune_lr"], g["finetune_steps"], g["finetune_l2"])
               == ("cosine", 0.2, 20, 0.5))
    code, out, err = run_cli(["finetune", *common, "--finetune-lr", "0.2", "--finetune-steps", "20",
                              "--finetune-l2", "0.5", "--schedule", "cosine"])
    assert code == 0, err
    one = json.loads(out)
    np.testing.assert_allclose(row["pretrain_loss_after"], one["pretrain_loss_after_finetune"], rtol=1e-12)
    np.testing.assert_allclose(row["finetune_loss_after"], one["finetune_loss_after_finetune"], rtol=1e-12)
    assert row["turning_step"] == one["turning_step"]
