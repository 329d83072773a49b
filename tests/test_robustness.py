"""Robustness of the command line: random valid and invalid inputs never give a traceback, never
exit 0 with a non-finite number, never leave a partial file; a killed `figures` run is redone
exactly by a rerun. Sizes are tiny and the examples few, so the whole file takes seconds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linear_theory.cli import main

ROOT = Path(__file__).resolve().parents[1]

# Values that are fine, and values that each break one rule (exit 2 expected for those).
NUMBERS = st.sampled_from(["0.05", "0.2", "1", "1e-6", "0", "-1", "nan", "inf", "1e200", "1e-320", "x", ""])
LISTS = st.sampled_from(["2,1", "1,0.5", "2,,1", "2,1,", ",", "1,-1", "1,nan", "a,b", "1e300,1"])
STEPS = st.sampled_from(["0,5,20", "0,3", "0,20,10", "0,5,5", "0,inf", "5", "-1,3", "1.5", "0,,5"])
SIZES = st.sampled_from(["3", "2", "1", "0", "-2", "2.5"])


def _option(name, values):
    return st.tuples(st.just(name), values).map(list)


SIMULATE = st.lists(st.one_of(
    _option("--lr", NUMBERS), _option("--singular-values", LISTS), _option("--checkpoints", STEPS),
    _option("--d-hidden", SIZES), _option("--sigma", NUMBERS), _option("--sigma2", NUMBERS),
    _option("--init-strength", NUMBERS), _option("--mc-samples", st.sampled_from(["0", "1", "4"])),
    _option("--method", st.sampled_from(["gd", "modes", "flow", "bogus"])),
    _option("--init", st.sampled_from(["aligned", "random"])), _option("--init-std", NUMBERS),
    _option("--input-variances", LISTS),
), max_size=5)
PREDICT = st.lists(st.one_of(
    _option("--lr", NUMBERS), _option("--singular-values", LISTS), _option("--sigma2", NUMBERS),
    _option("--d-hidden", SIZES), _option("--max-steps", st.sampled_from(["30", "0", "1e9x", "-3"])),
    _option("--input-variances", LISTS),
), max_size=4)
FINETUNE = st.lists(st.one_of(
    _option("--finetune-lr", NUMBERS), _option("--pretrain-steps", STEPS), _option("--change-size", NUMBERS),
    _option("--change-rank", SIZES), _option("--finetune-l2", NUMBERS), _option("--lr", NUMBERS),
), max_size=4)

BASE = ["--d-in", "4", "--d-out", "3", "--d-hidden", "3", "--singular-values", "1,0.5"]


def _reject_constant(name):
    raise AssertionError(f"non-finite number {name} in the JSON output")


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refusals
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _check(argv, tmp_path, capsys):
    target = tmp_path / "out.json"
    if target.exists():
        target.unlink()
    code, out, err = _run(argv + ["--json", "--out", str(target)], capsys)
    assert "Traceback" not in err
    assert code in (0, 1, 2), (argv, code, err)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out.json"]
    assert not leftovers, f"partial files {leftovers} for {argv}"
    if code == 0:
        payload = json.loads(out, parse_constant=_reject_constant)  # exactly one JSON object, all finite
        assert payload["schema"].startswith("linear-theory/") and payload["config"]["command"] == argv[0]
        assert json.loads(target.read_text(), parse_constant=_reject_constant) == payload
    else:
        assert not target.exists(), f"exit {code} but {target.name} written for {argv}"
        assert out == "" and err.strip() and len(err.strip().splitlines()) <= 2, (argv, err)  # one line (+ warning)


# A handful of examples per command (each one runs the tool on tiny sizes): enough to mix valid and
# invalid options, a few seconds in all.
_SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_SETTINGS
@given(opts=SIMULATE)
def test_simulate_random_options(opts, tmp_path, capsys):
    _check(["simulate"] + BASE + ["--checkpoints", "0,5,20"] + [x for o in opts for x in o], tmp_path, capsys)


@_SETTINGS
@given(opts=PREDICT, sigma=NUMBERS)
def test_predict_random_options(opts, sigma, tmp_path, capsys):
    _check(["predict"] + BASE + ["--max-steps", "30", "--sigma", sigma] + [x for o in opts for x in o],
           tmp_path, capsys)


@_SETTINGS
@given(opts=FINETUNE)
def test_finetune_random_options(opts, tmp_path, capsys):
    _check(["finetune"] + BASE + ["--max-steps", "20", "--finetune-steps", "3", "--change-rank", "1"]
           + [x for o in opts for x in o], tmp_path, capsys)


@pytest.mark.parametrize("argv, code, words", [
    (["simulate", "--init", "random", "--init-std", "1", "--lr", "0.45", "--checkpoints", "0,10,100"], 1,
     ["diverged", "step 10", "--lr"]),
    (["simulate", "--sigma", "1e200", "--checkpoints", "0,10"], 2, ["overflows"]),
    (["finetune", "--finetune-lr", "100", "--max-steps", "20"], 2, ["stability limit"]),
    (["simulate", "--singular-values", "2,,1"], 2, ["empty entry"]),
    (["simulate", "--sigma2", "0.1"], 2, ["--sigma2 needs --sigma"]),
    (["simulate", "--checkpoints", "0,100,10"], 2, ["increasing"]),
    (["simulate", "--checkpoints", "0,10,10"], 2, ["increasing"]),
])
def test_silent_failures_of_the_issue_are_errors(argv, code, words, run_cli, tmp_path):
    out = tmp_path / "r.json"
    got, stdout, err = run_cli(argv + ["--json", "--out", str(out)])
    assert got == code and stdout == "" and not out.exists()
    assert len(err.strip().splitlines()) == 1 and all(w in err for w in words), err


def test_width_below_rank_warns_with_the_modes(run_cli):
    code, out, err = run_cli(["simulate", "--d-hidden", "2", "--singular-values", "2,1,0.5,0.25",
                              "--checkpoints", "0,10", "--method", "modes", "--json"])
    assert code == 0 and json.loads(out)["mode_strengths"][-1][2:] == [0.0, 0.0]  # modes 2, 3 stay at zero
    assert "warning" in err and "modes 2 (s=0.5), 3 (s=0.25)" in err


def test_finetune_rate_limit_is_where_gd_diverges():
    """The refusal threshold is real: full fine-tuning GD just below it converges, just above it blows
    up (checked by running the GD, independently of the sharpness computation)."""
    import numpy as np

    from linear_theory import finetune_sweep, finetune_target, make_teacher
    from linear_theory._finetune import finetune_lr_limit

    t = make_teacher([1.0, 0.5], 4, 3, seed=0)
    B = finetune_target(t, "rank", 1.5, 1, 1)
    limit = finetune_lr_limit(t, B)
    # whitened: λ_max of the Hessian at the balanced solution is 2σ_1, so the limit is 1/max(s_1(A), σ_1(B))
    assert limit == pytest.approx(1 / max(1.0, np.linalg.svd(B, compute_uv=False)[0]), rel=1e-9)
    below = finetune_sweep(t, B, 3, 0.2, [2000], 0.9 * limit, 400)
    above = finetune_sweep(t, B, 3, 0.2, [2000], 1.1 * limit, 400)
    assert below.finetune_loss_after[0] < 1e-6  # converged onto B
    assert not above.finetune_loss_after[0] < 1e-3  # oscillates away or overflows (inf)


def test_figures_killed_then_rerun_gives_the_same_files(tmp_path, capsys):
    """SIGKILL a `figures` run as soon as it starts writing (a temporary file or the first output
    appears), rerun it: the files equal those of an unbroken run, nothing visible was ever partial,
    and the rerun clears the temporary files the kill left."""
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    assert main(["figures", "schedules", "--small", "--formats", "png,pdf", "--out", str(clean)]) == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "linear_theory.cli", "figures", "schedules", "--small",
                             "--formats", "png,pdf", "--out", str(broken)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if broken.exists() and any(broken.iterdir()):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    visible = [p for p in broken.iterdir() if not p.name.startswith(".")] if broken.exists() else []
    for p in visible:  # whatever is visible is whole (a kill may leave .NAME.*.tmp files, cleared below)
        assert p.read_bytes() == (clean / p.name).read_bytes(), f"partial {p.name}"
    assert main(["figures", "schedules", "--small", "--formats", "png,pdf", "--out", str(broken)]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in clean.iterdir())
    assert names == sorted(p.name for p in broken.iterdir()) == ["schedules.json", "schedules.pdf", "schedules.png"]
    for n in names:
        assert (clean / n).read_bytes() == (broken / n).read_bytes(), n


def test_monte_carlo_streamed_in_chunks_equals_one_pass(monkeypatch):
    """The running merge of chunks (memory independent of n) gives the mean and standard error of
    all draws at once (numpy on the concatenated draws of the same chunks)."""
    import jax.numpy as jnp
    import numpy as np

    from linear_theory import make_teacher, monte_carlo_perturbed_loss
    from linear_theory._noise_estimates import _generator, _mc_chunk, _split
    from linear_theory._x64 import x64

    from linear_theory import _noise_estimates

    t = make_teacher([1.0, 0.5], 4, 3, seed=0)
    rng = np.random.default_rng(1)
    W1, W2 = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 3))
    # small work memory, so chunks of 64 draws (156 floats per draw here): quick to compile and run
    monkeypatch.setattr(_noise_estimates, "_CHUNK_FLOATS", 156 * 64)
    n, seen = 150, []  # three chunks of 64, the last one cut
    mean, se = monte_carlo_perturbed_loss(W1, W2, t, 0.1, 0.2, n, seed=7, progress=seen.append)
    assert seen == [64, 128, 150]
    @x64  # the estimator runs in float64; so do the reference draws
    def all_draws():  # all n draws of the seed's stream in one block (no chunks)
        w1, w2 = jnp.asarray(W1), jnp.asarray(W2)
        Z1, Z2 = _split(_generator(7).standard_normal((n, 3 * 4 + 3 * 3)), w1, w2)
        return np.asarray(_mc_chunk(Z1, Z2, w1, w2, jnp.asarray(t.matrix), None, jnp.full(2, 0.1), jnp.full(2, 0.2)))

    draws = all_draws()
    assert draws.dtype == np.float64
    np.testing.assert_allclose(mean, draws.mean(0), rtol=1e-12)  # only the summation order differs
    np.testing.assert_allclose(se, draws.std(0, ddof=1) / np.sqrt(n), rtol=1e-9)


def test_predict_explains_a_rise_without_harmful_modes(run_cli):
    code, out, err = run_cli(["predict", "--sigma", "0.05", "--max-steps", "2000", "--json"])
    p = json.loads(out)
    assert code == 0 and p["harmful_modes"] == [] and p["rise"] > 0
    assert p["schema"] == "linear-theory/predict" and p["schema_version"] == 1 and p["config"]["sigma"] == 0.05
    assert "overshoot" in p["rise_explanation"] and p["overshooting_modes"] == [0, 1, 2, 3]
    # per mode (whitened, balanced): E[L_pert] − const = ½(a − s)² + ½ s* a; its minimum on a fine grid,
    # and the cost of sitting at a = s instead, computed here directly
    s_star = p["critical_singular_value"]
    for s, opt, cost in zip([2, 1.5, 1, 0.5], p["noisy_optimum"], p["overshoot_cost"]):
        a = np.linspace(0, s, 200001)
        e = 0.5 * (a - s) ** 2 + 0.5 * s_star * a
        assert opt == pytest.approx(a[e.argmin()], abs=2 * s / 200000)
        assert cost == pytest.approx(e[-1] - e.min(), rel=1e-6)
    assert p["rise"] <= p["rise_bound_at_convergence"] + 1e-12


def test_transformer_figure_names_each_verdict():
    """A panel never shows "[held]" for a prediction that failed: each verdict is named by its id."""
    import matplotlib

    matplotlib.use("Agg")
    from experiments.compare import compare
    from experiments.figure import transformer_figure
    from test_transformer import synthetic_result

    r = synthetic_result(order="reversed", ft_u=False)
    verdicts = {p["id"]: p["verdict"] for p in compare(r)["predictions"]}
    fig, data = transformer_figure(r)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert data["verdicts"] == verdicts and verdicts["1"] == "failed"
    for i, v in verdicts.items():
        assert f"{i} {v}" in titles
    assert "[held]" not in titles and "★" in titles
