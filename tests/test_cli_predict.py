import json
import subprocess
import sys

import numpy as np
import pytest

from linear_theory import make_teacher
from linear_theory._predict import predict
from linear_theory.cli import main

PREDICT = ["predict", "--d-in", "24", "--d-hidden", "20", "--d-out", "16", "--singular-values", "2,1,0.5,0.2,0.1",
           "--init-strength", "1e-6", "--lr", "0.05", "--sigma", "0.05", "--max-steps", "20000"]


def test_predict_json_contract(capsys):
    assert main(PREDICT + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    keys = {"critical_singular_value", "harmful_modes", "mode_learning_steps", "inflection_step",
            "inflection_step_estimate", "min_expected_perturbed_loss", "expected_perturbed_loss_at_max_steps"}
    assert keys <= out.keys()
    want = predict(make_teacher([2, 1, 0.5, 0.2, 0.1], 24, 16, seed=0), 0.05, 0.05, 20000, d_hidden=20)
    assert out["inflection_step"] == want.inflection_step
    assert out["mode_learning_steps"] == want.mode_learning_steps
    assert out["critical_singular_value"] == pytest.approx(0.05**2 * 40)


def test_predict_relative_noise_json(capsys):
    """--noise relative-rms: the stds reported at the inflection are γ × the layers' RMS
    there, √(Σa/size) for aligned balanced weights (checked in test_sweep against full GD)."""
    assert main(PREDICT + ["--noise", "relative-rms", "--sigma", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["noise"] == "rms" and out["rise_bound_at_convergence"] is None
    s0, s1 = out["noise_std_at_step_0"], out["noise_std_at_inflection"]
    np.testing.assert_allclose(s0, [0.5 * np.sqrt(5e-6 / (20 * 24)), 0.5 * np.sqrt(5e-6 / (16 * 20))], rtol=1e-12)
    assert s1[0] > 100 * s0[0]  # the RMS grew with the learned modes


def test_predict_table(capsys):
    assert main(PREDICT) == 0
    text = capsys.readouterr().out
    assert "inflection step" in text and "harmful" in text


def test_simulate_sigma_columns(capsys):
    args = ["simulate", "--checkpoints", "0,100,1000", "--sigma", "0.05", "--mc-samples", "300", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("expected_perturbed_loss", "monte_carlo_perturbed_loss", "monte_carlo_stderr"):
        assert len(out[k]) == 3
    for e, m, s in zip(out["expected_perturbed_loss"], out["monte_carlo_perturbed_loss"], out["monte_carlo_stderr"]):
        assert abs(e - m) < 4 * s


def test_finetune_json_contract(capsys):
    args = ["finetune", "--spectrum", "power:16:1:1", "--lr", "0.2", "--finetune-lr", "0.05",
            "--finetune-steps", "50", "--max-steps", "10000", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    n = len(out["pretrain_steps"])
    assert n == len(out["pretrain_loss_after_finetune"]) == len(out["finetune_loss_after_finetune"]) > 10
    assert out["turning_is_interior"] and out["turning_step"] in out["pretrain_steps"]


@pytest.mark.parametrize("argv, needle", [
    (PREDICT + ["--sigma", "-0.1"], "negative"),
    (PREDICT + ["--sigma", "0"], "no inflection"),
    (PREDICT + ["--max-steps", "0"], "below 1"),
    (PREDICT + ["--lr", "0.5"], "stability limit"),
    (["predict", "--max-steps", "10"], "--sigma"),
    (["finetune", "--finetune-lr", "0"], "not positive"),
    (["finetune", "--change", "rotate", "--d-in", "5"], "needs dimension"),
    (["simulate", "--sigma", "0.1", "--mc-samples", "1"], "at least 2"),
    (["figures-that-do-not-exist"], "invalid choice"),
])
def test_errors(argv, needle, run_cli):
    code, out, err = run_cli(argv)
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert out == ""


def test_error_from_a_fresh_process_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "linear_theory.cli"] + PREDICT + ["--sigma", "nan"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""


@pytest.mark.parametrize("kind", ["relative-rms", "relative-init"])
def test_simulate_relative_noise(kind, capsys):
    """std = γ × RMS of the layer (now, or at step 0), RMS² = ‖W‖² / size."""
    args = ["simulate", "--checkpoints", "0,100,1000", "--sigma", "0.5", "--noise", kind,
            "--mc-samples", "0", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    n1 = np.array(out["weight_sq_norms"]["W1"])
    n2 = np.array(out["weight_sq_norms"]["W2"])
    rms1, rms2 = np.sqrt(n1 / (20 * 24)), np.sqrt(n2 / (16 * 20))
    if kind == "relative-init":
        rms1, rms2 = np.full(3, rms1[0]), np.full(3, rms2[0])
    np.testing.assert_allclose(out["noise_std_W1"], 0.5 * rms1, rtol=1e-12)
    np.testing.assert_allclose(out["noise_std_W2"], 0.5 * rms2, rtol=1e-12)
    assert "monte_carlo_perturbed_loss" not in out


def test_converging_path_is_not_called_a_turn(run_cli):
    """At the noise-optimal weight decay GD descends E[L_pert] itself, so E[L_pert] only falls
    (to round-off): no turn is reported; without decay the same problem turns up. An independent
    numpy loop with the best single decay λ = s*/2 (balanced map, same fixed point principle)
    shows E[L_pert] only falling, step by step."""
    base = ["predict", "--d-in", "24", "--d-hidden", "20", "--d-out", "16", "--singular-values", "2,1,0.5,0.2,0.1",
            "--lr", "0.05", "--sigma", "0.05", "--max-steps", "20000", "--json"]
    code, out, _ = run_cli(base + ["--weight-decay", "noise-optimal"])
    decayed = json.loads(out)
    code2, out2, _ = run_cli(base)
    plain = json.loads(out2)
    assert code == code2 == 0 and decayed["turn"] is False and plain["turn"] is True
    # numpy: balanced single λ = s*/2 = 0.05 (whitened): a ← a(1 + η(s − λ − a))², E[L_pert] along the path
    s, lr, lam, star = np.array([2, 1, 0.5, 0.2, 0.1]), 0.05, 0.05, 0.05**2 * 40
    a, vals = np.full(5, 1e-6), []
    for _ in range(3000):
        a = a * (1 + lr * (s - lam - a)) ** 2
        vals.append(0.5 * np.sum((a - s) ** 2) + 0.5 * star * np.sum(a))  # + constants
    assert np.max(np.diff(vals)) < 1e-15  # only falls: no turn with the decay


def test_mode_lists_print_as_ranges():
    """index_list against the sets it must reproduce: every listed index is in the input and
    every input index is listed (ranges expanded back), runs of ≥ 2 become "a–b"."""
    from linear_theory.output import index_list

    rng = np.random.default_rng(3)
    for _ in range(50):
        idx = sorted(set(rng.integers(0, 40, rng.integers(0, 30)).tolist()))
        text = index_list(idx)
        back = []
        for part in ([] if text == "none" else text.split(", ")):
            lo, _, hi = part.partition("–")
            back += list(range(int(lo), int(hi or lo) + 1))
        assert back == idx
        assert text.count(", ") + 1 == (sum(1 for a, b in zip([-2] + idx, idx) if b != a + 1) or 1)
    assert index_list(range(12, 2000)) == "12–1999" and index_list([]) == "none"
