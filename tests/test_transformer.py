"""The transformer check: language, probes, noise, resume, the ci preset end to end, compare."""

import dataclasses
import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.compare import compare, learning_steps, spearman
from experiments.finetune import FinetuneConfig
from experiments.language import finetune_language, make_language, sample
from experiments.model import GPTConfig, init_params, is_matrix
from experiments.presets import LanguageConfig, ProbeConfig, RunConfig
from experiments.probes import evaluate_jit, make_noise_probe, perturb, strengths
from experiments.run import run_experiment
from experiments.train import TrainConfig, checkpoint_steps, train
from linear_theory import cli


# ---------------------------------------------------------------- the language


def test_entropy_rate_equals_block_entropy_by_enumeration():
    """H(X_n | X_1..X_{n−1}) = H_n − H_{n−1}, summed over every sequence, is the entropy rate."""
    lang = make_language(vocab=3, rank=2, s1=0.8, alpha=0.5, seed=4)
    p, pi = lang.transition, lang.stationary
    assert np.allclose(pi @ p, pi, atol=1e-12) and math.isclose(pi.sum(), 1.0)

    def block_entropy(n):
        h = 0.0
        for seq in itertools.product(range(3), repeat=n):
            q = pi[seq[0]] * np.prod([p[a, b] for a, b in zip(seq, seq[1:])])
            h -= q * math.log(q)
        return h

    assert block_entropy(6) - block_entropy(5) == pytest.approx(lang.entropy_rate, rel=1e-10)


def test_entropy_rate_against_sampled_chain():
    """Monte Carlo −log P(x_{t+1} | x_t) along sequences from the device sampler, and token frequencies ≈ π."""
    lang = make_language(vocab=32, rank=16, s1=0.8, seed=1)
    x = np.asarray(sample(jax.random.key(0), lang.tables(), 256, 400))
    nll = -np.log(lang.transition[x[:, :-1], x[:, 1:]])
    per_seq = nll.mean(1)  # sequences are independent: standard error from them
    assert abs(per_seq.mean() - lang.entropy_rate) < 4 * per_seq.std(ddof=1) / math.sqrt(per_seq.size)
    freq = np.bincount(x.ravel(), minlength=32) / x.size
    assert np.abs(freq - lang.stationary).max() < 0.01


def test_language_structure():
    lang = make_language(vocab=64, rank=20, s1=0.5, alpha=0.5, seed=3)
    assert np.allclose(lang.logits.sum(1), 0, atol=1e-10)  # rows centred
    sv = np.linalg.svd(lang.logits, compute_uv=False)
    assert np.allclose(sv[:20] / 64, lang.s) and sv[20] < 1e-9  # L = V·U diag(s) Vᵀ
    assert np.allclose(lang.u.T @ lang.logits @ lang.v / 64, np.diag(lang.s), atol=1e-12)
    second = finetune_language(lang, "rank", rank=4, seed=5)
    assert np.linalg.matrix_rank(second.logits - lang.logits, tol=1e-8) == 4
    assert not np.isclose(second.entropy_rate, lang.entropy_rate)
    with pytest.raises(ValueError):
        make_language(vocab=8, rank=8)


# ---------------------------------------------------------------- probes


TINY = GPTConfig(vocab_size=16, context=8, d_model=16, n_heads=2, n_layers=1)  # shared: one compilation


def planted_model(lang, a_planted, seed=0):
    """A one-layer model whose logit map is set by hand: identity embedding, blocks silenced,
    unembedding = V·u diag(a) vᵀ + a component off the modes + row shifts (removed by centring)."""
    v = lang.vocab
    params = init_params(TINY, jax.random.key(seed))
    params["wte"] = jnp.eye(v, dtype=jnp.float32)
    params["wpe"] = jnp.zeros_like(params["wpe"])
    params["blocks"][0]["attn"]["w_o"] = jnp.zeros_like(params["blocks"][0]["attn"]["w_o"])
    params["blocks"][0]["mlp"]["w_proj"] = jnp.zeros_like(params["blocks"][0]["mlp"]["w_proj"])
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((v, 2)) - lang.u @ (lang.u.T @ rng.standard_normal((v, 2))))
    off = q[:, :1] @ (q[:, 1:] - lang.v @ (lang.v.T @ q[:, 1:])).T  # orthogonal to every u_k
    m = v * (lang.u * a_planted) @ lang.v.T + 3.0 * off + rng.standard_normal((v, 1))
    params["lm_head"] = jnp.asarray(m, jnp.float32)
    return params


def test_probe_recovers_planted_strengths():
    lang = make_language(vocab=16, rank=6, s1=0.5, seed=2)
    a_planted = np.array([0.1, 0.45, 0.02, 0.3, 0.0, 0.2])  # not the language's own strengths, not ordered
    params = planted_model(lang, a_planted)
    tokens = sample(jax.random.key(1), lang.tables(), 16, TINY.context + 1)
    assert len(np.unique(np.asarray(tokens[:, :-1]))) == 16  # every row of the logit map is observed
    _, _, m = evaluate_jit(params, TINY, tokens, lang.tables())
    a = np.asarray(strengths(m, jnp.asarray(lang.u, jnp.float32), jnp.asarray(lang.v, jnp.float32)))
    assert np.allclose(a, a_planted, atol=1e-5)
    # the raw SVD of the centred map does not give these numbers (the off-mode component dominates)
    assert not np.allclose(np.linalg.svd(np.asarray(m), compute_uv=False)[:6] / 16, np.sort(a_planted)[::-1], atol=0.01)


def test_noise_of_zero_changes_nothing_and_noise_hits_only_matrices():
    lang = make_language(vocab=16, rank=6, seed=0)
    params = init_params(TINY, jax.random.key(0))
    tables = lang.tables()
    tokens = sample(jax.random.key(1), tables, 16, 9)
    clean = float(evaluate_jit(params, TINY, tokens, tables)[0])
    probe = make_noise_probe(TINY, 2, 2)
    for relative in (True, False):
        same = perturb(params, jax.random.key(3), 0.0, relative)
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(same), jax.tree_util.tree_leaves(params)))
        excess, diff = probe(params, tokens, tables, jax.random.key(3), jnp.float32(0.0), jnp.asarray(relative))
        excess = np.asarray(excess)
        assert np.all(excess == excess[0])  # every draw of zero noise is the same model
        # the clean model, up to float32 rounding of the batched (per-draw) kernels against the unbatched one
        assert excess[0] == pytest.approx(clean, rel=1e-6) and np.abs(np.asarray(diff)).max() < 1e-6
    with_ln = init_params(dataclasses.replace(TINY, layernorm=True), jax.random.key(0))
    for relative in (True, False):
        noisy = perturb(with_ln, jax.random.key(3), 0.1, relative)
        for a, b in zip(jax.tree_util.tree_leaves(noisy), jax.tree_util.tree_leaves(with_ln)):
            assert (not np.array_equal(a, b)) == is_matrix(b)  # every matrix moves, biases and LN stay


def test_noise_sweep_rows_each_their_own_and_equal_to_one_at_a_time():
    """All noise rows in one vmapped call: each row equals the unbatched probe of its (σ, kind) to float32
    round-off, and no two rows are the same — in particular an absolute row is not a relative row of the
    same σ (the same σ values are used for both kinds, so a mix-up of the kinds would show)."""
    from experiments.probes import make_noise_sweep

    lang = make_language(vocab=16, rank=6, seed=0)
    params = init_params(TINY, jax.random.key(0))
    tables = lang.tables()
    tokens = sample(jax.random.key(1), tables, 16, 9)
    rows = [(0.5, True), (0.05, True), (0.05, False), (0.5, False)]
    sweep = make_noise_sweep(TINY, 2, 2)
    probe = make_noise_probe(TINY, 2, 2)
    excess, diff = sweep(params, tokens, tables, jax.random.key(3), jnp.asarray([r[0] for r in rows], jnp.float32),
                         jnp.asarray([r[1] for r in rows]))
    assert excess.shape == (4, 2) and diff.shape == (4, 2, 16, 16)
    for j, (sigma, relative) in enumerate(rows):
        e1, d1 = probe(params, tokens, tables, jax.random.key(3), jnp.float32(sigma), jnp.asarray(relative))
        # float32: batching may reorder reductions; 1e-5 relative (1e-6 absolute on the map) is a few ulps
        assert np.allclose(np.asarray(excess[j]), np.asarray(e1), rtol=1e-5, atol=0)
        assert np.allclose(np.asarray(diff[j]), np.asarray(d1), rtol=1e-5, atol=1e-6)
    flat = np.asarray(excess)
    assert all(not np.allclose(flat[i], flat[k]) for i in range(4) for k in range(i + 1, 4))


# ---------------------------------------------------------------- training and resume


def tiny_config(**train):
    lang = LanguageConfig(vocab=16, rank=8, s1=0.5, alpha=0.5, ft_rank=2)
    return RunConfig(
        preset="test", variant="theory", seed=3, language=lang,
        model=TINY,
        train=TrainConfig(**{"steps": 60, "batch_size": 16, "lr": 0.5, "n_checkpoints": 5, "first_checkpoint": 5,
                             "chunk": 16, **train}),
        probe=ProbeConfig(n_eval=16, draws=2, sigmas_relative=(0.5,), sigmas_absolute=(0.05,), hessian_probes=1,
                          hessian_eval=4, map_batch=2),
        finetune=FinetuneConfig(steps=4, batch_size=8, rates=(0.5, 0.1)),
    )


def without_timing(r):
    return {k: v for k, v in r.items() if k != "timing"}


@pytest.fixture(scope="module")
def tiny_unbroken(tmp_path_factory):
    """One unbroken run of `tiny_config()` shared by the resume tests: (folder, result)."""
    folder = tmp_path_factory.mktemp("unbroken") / "a"
    return folder, run_experiment(tiny_config(), folder, progress=False)


def test_resume_gives_the_unbroken_result(tmp_path, capsys, tiny_unbroken):
    cfg = tiny_config()
    steps = checkpoint_steps(60, 5, 5)
    assert steps == [0, 5, 11, 26, 60]
    folder_a, unbroken = tiny_unbroken
    assert run_experiment(cfg, tmp_path / "b", progress=False, stop_after=11) is None
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == [
        f"step_{s:08d}.npz" for s in steps[:3]]
    capsys.readouterr()
    resumed = run_experiment(cfg, tmp_path / "b", progress=False)
    err = capsys.readouterr().err
    assert "resuming" in err and "training from step 11 of 60" in err
    assert resumed["timing"]["resumed_from"] == 11 and unbroken["timing"]["resumed_from"] is None
    assert json.dumps(without_timing(resumed)) == json.dumps(without_timing(unbroken))
    for s in steps:  # the saved parameters are bit-for-bit the same
        with np.load(folder_a / "checkpoints" / f"step_{s:08d}.npz") as fa, \
                np.load(tmp_path / "b" / "checkpoints" / f"step_{s:08d}.npz") as fb:
            assert all(np.array_equal(fa[k], fb[k], equal_nan=True) for k in fa.files)
    # re-running a finished run reports it as it was, original timing included, and says so
    again = run_experiment(cfg, tmp_path / "b", progress=False)
    assert again == json.loads(json.dumps(resumed))
    assert "finished run" in capsys.readouterr().err
    # the folder remembers its configuration, and the error names the setting that differs
    with pytest.raises(ValueError, match=rf"different configuration \(seed: {cfg.seed} there, 4 asked"):
        run_experiment(dataclasses.replace(cfg, seed=4), tmp_path / "b", progress=False)


def test_schedules_and_optimisers_run(tmp_path):
    from experiments.train import lr_schedule

    for sched in ("constant", "cosine", "wsd"):
        tc = TrainConfig(steps=100, schedule=sched, warmup_steps=10, decay_fraction=0.2)
        f = lr_schedule(tc)
        assert float(f(0)) == 0.0 and float(f(10)) == pytest.approx(tc.lr)
        assert float(f(100)) == pytest.approx(tc.lr if sched == "constant" else 0.0, abs=1e-6)
    assert float(lr_schedule(TrainConfig(steps=100, schedule="wsd"))(79)) == pytest.approx(0.5)
    cfg = tiny_config(optimizer="adamw", lr=1e-2, weight_decay=0.1, schedule="wsd", warmup_steps=5, steps=40,
                      n_checkpoints=3)
    lang = make_language(16, 8, 0.5, 0.5, seed=0)
    log = train(cfg.model, cfg.train, lang.tables(), 0, tmp_path)
    assert log["steps"] == [0, 5, 40] and log["train_loss"][-1] < log["train_loss"][1]


# ---------------------------------------------------------------- the ci preset end to end


def test_ci_preset_end_to_end_and_compare(tmp_path, capsys):
    out, main = tmp_path / "ci", cli.main
    assert main(["transformer", "--preset", "ci", "--variant", "theory", "--out", str(out), "--json",
                 "--no-progress", "--ft-seeds", "2"]) == 0
    text = capsys.readouterr().out
    r = json.loads(text)  # stdout holds exactly one JSON object
    assert r == json.loads((out / "result.json").read_text())
    n = len(r["steps"])
    for key in ("steps", "loss", "entropy_rate", "target_strengths", "mode_strengths", "noise", "finetune"):
        assert key in r
    assert len(r["mode_strengths"]) == n and len(r["mode_strengths"][0]) == len(r["target_strengths"])
    nz = r["noise"]
    assert set(nz["kind"]) == {"relative", "absolute"} and len(nz["sigmas"]) == len(nz["delta_loss"])
    assert all(len(d) == n for d in nz["delta_loss"]) and "biases" in nz["perturbed"]
    assert len(r["finetune"]["pretrain_excess"]) == len(r["finetune"]["rates"])
    # the model learns: loss falls towards the entropy rate, strong modes are picked up
    assert r["excess_loss"][-1] < 0.5 * r["excess_loss"][0]
    assert all(lo >= r["loss_floor_eval"] - 1e-4 for lo in r["loss"])
    assert np.mean(np.asarray(r["mode_strengths"][-1][:5]) / r["target_strengths"][:5]) > 0.5
    # noise hurts more after training than at init (relative σ = 1)
    i = [k for k, (kind, s) in enumerate(zip(nz["kind"], nz["sigmas"])) if kind == "relative" and s == 1.0][0]
    assert nz["delta_loss"][i][-1] > nz["delta_loss"][i][0] + 0.01

    assert main(["compare", str(out), "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert [p["id"] for p in cmp["predictions"]] == ["1", "2", "3r", "3a", "4r", "4a", "5r", "5a", "6", "6d"]
    # the fine-tuning rates were chosen inside the theory's U window, and every verdict carries its interval
    theory = r["theory"]["finetune"]
    lo, hi = theory["window"]
    assert all(lo <= k <= hi for k in theory["k_eta_points"]) and len(r["finetune"]["rates"]) == 3
    assert all(len(x) == 2 for x in r["finetune"]["pretrain_excess_seeds"][0])
    assert all(p["verdict"] in ("held", "failed", "inconclusive") for p in cmp["predictions"])
    for name in ("compare.json", "compare.png", "compare.pdf"):
        assert (out / name).stat().st_size > 0


# ---------------------------------------------------------------- compare on synthetic results


def synthetic_result(order="right", ft_u=True):
    """A hand-made run whose verdicts follow from its construction.

    Modes s = 0.8, 0.4, 0.2, 0.1 reach half strength at steps 80, 160, 320, 640 (step·s = 64, slope 1),
    or in reverse order. Relative noise: σ = 0.25 adds a small, steadily growing Δloss (½σ² × a
    Hessian trace that it tracks exactly) and never turns up; σ = 0.5 has its minimum at step 640 and
    rises by 0.02; σ = 1 has its minimum at step 160 and rises by 0.06 — and (1/0.5)² × 160 = 640, as
    s* ∝ σ² with step ∝ 1/s predicts. Absolute noise (σ = 0.05) grows too but the loss keeps falling:
    no U. The noise floor σ²·0.4·√(t/160) crosses s of the modes being learned, 64/t, at step 160 for
    σ = 1 (κ = 1), at ≈ 403 for σ = 0.5 (within 2× of 640) and ≈ 1016 for σ = 0.25 (no U seen, beyond
    half the run): the spectral threshold predicts the held-out turns. Fine-tuning at rate 0.5 is U-shaped (minimum at 160), at rate 0.1 its minimum comes later
    (640); with ft_u=False both fall monotonically. Each draw carries an offset shared by every
    checkpoint (the same noise keys) plus tiny independent noise.
    """
    steps = [0, 10, 20, 40, 80, 160, 320, 640, 1280]
    t = np.asarray(steps, float)
    s = np.array([0.8, 0.4, 0.2, 0.1])
    half = 64 / s if order == "right" else (64 / s)[::-1]
    a = s / (1 + (np.maximum(t[:, None], 1) / half) ** -4)  # a_k = s_k/2 exactly at step half_k
    clean = 0.5 * ((s - a) ** 2).sum(1)
    learned = a.sum(1) / s.sum()
    rng = np.random.default_rng(0)
    offset = 0.003 * rng.standard_normal(16)

    def draws(curve):
        return (np.asarray(curve)[:, None] + offset + 1e-6 * rng.standard_normal((len(steps), 16))).tolist()

    def u_curve(c_min, rise):
        """The clean loss until step c_min, then flat, plus a penalty growing to `rise` at the end."""
        k = steps.index(c_min)
        extra = np.zeros(len(steps))
        extra[k:] = np.linspace(0, 1, len(steps) - k) ** 2
        return np.where(np.arange(len(steps)) < k, clean, clean[k]) + rise * extra

    delta_small = 0.0002 + 0.008 * learned + 1e-5 * np.log1p(t)
    delta_abs = 0.0001 + 0.004 * learned + 5e-6 * np.log1p(t)
    rows = [("relative", 0.25, clean + delta_small), ("relative", 0.5, u_curve(640, 0.02)),
            ("relative", 1.0, u_curve(160, 0.06)), ("absolute", 0.05, clean + delta_abs)]
    if order == "right":  # the construction keeps these two falling: no U there
        assert np.all(np.diff(clean + delta_small) < 0) and np.all(np.diff(clean + delta_abs) < 0)
    pert = [draws(c) for _, _, c in rows]
    ft_a = u_curve(160, 0.02) if ft_u else clean + 0.3
    ft_b = u_curve(640, 0.02) if ft_u else clean + 0.2
    return {
        "schema": "linear-theory/transformer-run/1", "preset": "synthetic", "variant": "hand-made",
        "steps": steps, "excess_loss": clean.tolist(), "target_strengths": s.tolist(), "mode_strengths": a.tolist(),
        "weight_sq_norm": (1 + a.sum(1)).tolist(),
        "hessian_trace": (delta_abs / (0.5 * 0.05**2)).tolist(),
        "hessian_trace_relative": (delta_small / (0.5 * 0.25**2)).tolist(),
        "noise": {"kind": [k for k, _, _ in rows], "sigmas": [s_ for _, s_, _ in rows], "perturbed_draws": pert,
                  "delta_loss": [(np.mean(p, 1) - clean).tolist() for p in pert],
                  "perturbed_loss": [np.mean(p, 1).tolist() for p in pert],
                  "modes_above_floor": [[0] * len(steps)] * len(rows),
                  # floor σ²·0.4·√(t/160): at σ = 1 it meets s of the modes being learned (64/t) at the turn, 160
                  "noise_floor": [(s_ ** 2 * 0.4 * np.sqrt(t / 160)).tolist() for _, s_, _ in rows]},
        "finetune": {"rates": [0.5, 0.1], "steps": 10, "pretrain_excess": [ft_a.tolist(), ft_b.tolist()],
                     "finetune_excess": [[0.1] * len(steps)] * 2},
    }


def test_compare_on_synthetic_result(tmp_path):
    """Verdicts that need no theory record follow from the construction; those that need the theory
    (2, 4, 5, 6) say inconclusive rather than compare against nothing."""
    r = synthetic_result()
    s = np.asarray(r["target_strengths"])
    assert np.allclose(learning_steps(r["steps"], r["mode_strengths"], s), [80, 160, 320, 640])
    v = {p["id"]: p for p in compare(r)["predictions"]}
    assert {k: p["verdict"] for k, p in v.items()} == {
        "1": "held", "2": "inconclusive", "3r": "held", "3a": "held", "4r": "inconclusive", "4a": "inconclusive",
        "5r": "inconclusive", "5a": "inconclusive", "6": "inconclusive", "6d": "inconclusive"}
    timing = {row["threshold"]: row for row in v["2"]["details"]["thresholds"]}
    assert timing[0.5]["transformer"]["mean"] == pytest.approx(1.0, abs=1e-6)  # step·s = 64 by construction
    # the exponent is the least-squares slope of log(refined turn step) on log σ over the σ that turn up
    from experiments.compare import noise_rows, turn_up

    turns = [t for t in (turn_up(r, i) for i in noise_rows(r, "relative")) if t["turns_up"]]
    assert [t["sigma"] for t in turns] == [0.5, 1.0]
    assert 320 < turns[0]["argmin_step"] < 1280 and 80 < turns[1]["argmin_step"] < 320  # refined near 640, 160
    slope = np.polyfit(np.log([0.5, 1.0]), np.log([t["argmin_step"] for t in turns]), 1)[0]
    assert v["5r"]["details"]["transformer_exponent"]["mean"] == pytest.approx(slope, rel=1e-9)

    bad = {p["id"]: p["verdict"] for p in compare(synthetic_result(order="reversed", ft_u=False))["predictions"]}
    assert bad["1"] == "failed"

    (tmp_path / "result.json").write_text(json.dumps(r))
    assert cli.main(["compare", str(tmp_path), "--no-figure"]) == 0


def test_interval_and_verdict_logic_against_hand_computed_t_quantiles():
    """The 95% interval across seeds is mean ± t(0.975, n−1)·sd/√n; t(0.975, 2) = 4.302652729912 and
    t(0.975, 4) = 2.776445105198 from tables (not from scipy); held/failed/inconclusive by containment."""
    from experiments.compare import interval, judge

    x = [0.012, 0.020, 0.016]
    ci = interval(x)
    half = 4.302652729912 * np.std(x, ddof=1) / math.sqrt(3)
    assert (ci["mean"], ci["lo"], ci["hi"], ci["n"]) == pytest.approx((0.016, 0.016 - half, 0.016 + half, 3), rel=1e-9)
    y = [1.0, 1.2, 0.9, 1.1, float("nan"), 1.05]  # an undefined seed is left out and counted
    ci5 = interval(y)
    half5 = 2.776445105198 * np.std(y[:4] + y[5:], ddof=1) / math.sqrt(5)
    assert (ci5["lo"], ci5["hi"], ci5["dropped"]) == pytest.approx((1.05 - half5, 1.05 + half5, 1), rel=1e-9)
    one = interval([0.01], within_se=0.002)  # one seed: its own standard error, normal quantile 1.959964
    assert (one["lo"], one["hi"]) == pytest.approx((0.01 - 1.959964 * 0.002, 0.01 + 1.959964 * 0.002), rel=1e-6)
    assert math.isnan(interval([0.01])["lo"]) and judge(interval([0.01]), lo=0.002) == "inconclusive"
    assert judge(ci, lo=0.002) == "held" and judge(ci, lo=0.05) == "failed" and judge(ci, lo=0.013) == "inconclusive"
    assert judge(ci5, 0.9, 1.2) == "held" and judge(ci5, 1.3, 2) == "failed"


def test_refined_argmin_finds_the_vertex_of_a_parabola_in_log_step():
    from experiments.compare import refined_argmin

    steps = [0, 30, 60, 120, 240, 480, 960]
    for true in (150.0, 100.0, 333.0):
        curve = [5.0] + [0.3 * (math.log(t) - math.log(true)) ** 2 + 0.1 for t in steps[1:]]
        step, c = refined_argmin(steps, curve)
        assert step == pytest.approx(true, rel=1e-9)  # three points of a parabola determine it exactly
        assert steps[c - 1] < step < steps[c + 1]
    assert refined_argmin(steps, [5, 4, 3, 2, 1, 0.5, 0.1]) == (960.0, 6)  # minimum at the end: not refined
    assert refined_argmin(steps, [5, 1, 3, 4, 5, 6, 7]) == (30.0, 1)  # a neighbour at step 0: not refined


def test_theory_timing_slope_equals_an_independent_numpy_gd_loop():
    """Prediction 2's theory (compare.theory_timing: linear_theory.gd_modes on a log grid) against the exact
    map a ← a(1 + η(s − a))² iterated step by step in numpy, crossings found to the step."""
    from experiments.compare import THRESHOLDS, saxe_fit, theory_timing

    s = 0.5 * np.arange(1, 17, dtype=float) ** -0.5
    lr, a0 = 0.08, 3e-5
    result = {"target_strengths": s.tolist(), "steps": [0, 100, 2000],
              "theory": {"vocab": 32, "d_hidden": 16, "lr": lr, "lr_note": "", "a0": a0, "init_sq_norms": [0, 0],
                         "momentum": 0.9}}
    theory = theory_timing(result)
    a = np.full(s.size, a0)
    first = {f: np.full(s.size, np.inf) for f in THRESHOLDS}
    for step in range(1, 20000):
        a = a * (1 + lr * (s - a)) ** 2
        for f in THRESHOLDS:
            new = np.isinf(first[f]) & (a >= f * s)
            first[f][new] = step
    for f in THRESHOLDS:
        # the log grid interpolates between grid points ≤ 0.6% apart in step, a step-by-step loop rounds up
        # to the next step: crossings agree within 1% + 1 step, slopes within 0.01
        assert np.all(np.abs(theory[f] - first[f]) <= 0.01 * first[f] + 1.0)
        assert saxe_fit(theory[f], s)[0] == pytest.approx(saxe_fit(first[f], s)[0], abs=0.01)


def _ft_run(curves_by_seed, theory_u):
    """A run with one fine-tuning rate: curves_by_seed (C, F) per fine-tuning seed; a theory record whose
    curve at that rate is U-shaped (theory_u) or falling."""
    steps = [0, 10, 20, 40, 80, 160, 320, 640]
    th_curve = [0.5, 0.4, 0.3, 0.2, 0.25, 0.3, 0.35, 0.4] if theory_u else [0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.08, 0.07]
    c = np.asarray(curves_by_seed, float)
    return {"steps": steps, "finetune": {"rates": [0.4], "steps": 10, "seeds": c.shape[1],
                                         "pretrain_excess": [c.mean(1).tolist()], "pretrain_excess_seeds": [c.tolist()]},
            "theory": {"finetune": {"window": [1.0, 6.0], "k_steps": 10,
                                    "curves": [{"k_eta": 3.0, "pretrain_after": th_curve, "finetune_after": th_curve}]}}}


def test_finetune_verdict_needs_a_persisting_rise_beyond_its_interval():
    """Prediction 6 across 3 pre-training seeds × 3 fine-tuning seeds: a rise that persists to the last
    checkpoint in every seed holds; a hump that has come back down by the end is no U; where the theory
    has no U, a falling curve holds."""
    from experiments.compare import predict_finetune

    rng = np.random.default_rng(1)
    base = np.array([0.50, 0.45, 0.40, 0.30, 0.32, 0.34, 0.37, 0.40])
    hump = np.array([0.50, 0.45, 0.40, 0.30, 0.45, 0.50, 0.40, 0.301])
    fall = np.array([0.50, 0.45, 0.40, 0.30, 0.25, 0.20, 0.18, 0.17])

    def seeds(curve):  # 3 pre-training seeds, each with 3 fine-tuning seeds: a per-seed offset + small noise
        return [(curve + o)[:, None] + 0.002 * rng.standard_normal((8, 3)) for o in (0.0, 0.01, -0.01)]

    verdict = lambda curve, u: predict_finetune([_ft_run(c, u) for c in seeds(curve)])  # noqa: E731
    rise = verdict(base, True)
    assert rise["verdict"] == "held" and rise["statistic"]["lo"] > 0.002
    # refined minimum: the vertex (three-point formula) of the parabola in log-step through steps 20, 40, 80
    # of the noise-free curve; the 0.002 noise moves it by a few percent
    (x1, x2, x3), (y1, y2, y3) = np.log([20, 40, 80]), base[2:5]
    xv = x2 - 0.5 * ((x2 - x1) ** 2 * (y2 - y3) - (x2 - x3) ** 2 * (y2 - y1)) / ((x2 - x1) * (y2 - y3) - (x2 - x3) * (y2 - y1))
    assert rise["details"]["rates"][0]["argmin_steps"] == pytest.approx([math.exp(xv)] * 3, rel=0.1)
    assert verdict(hump, True)["verdict"] in ("failed", "inconclusive")
    assert verdict(fall, True)["verdict"] == "failed"  # the theory's U is not there: minimum at the end
    assert verdict(fall, False)["verdict"] == "held"


def test_finetune_seeds_batched_equal_one_at_a_time():
    """The fine-tuning seeds run side by side (vmap) give what each gives alone, to float32 round-off."""
    from experiments.finetune import make_finetune

    lang = make_language(16, 8, 0.5, 0.5, seed=0)
    second = finetune_language(lang, "rank", rank=2, strength=0.5, seed=1)
    ta, tb = lang.tables(), second.tables()
    params = init_params(TINY, jax.random.key(0))
    tok_a = sample(jax.random.key(1), ta, 8, TINY.context + 1)
    tok_b = sample(jax.random.key(2), tb, 8, TINY.context + 1)
    fn = make_finetune(TINY, 3, 4, "sgd", 0.9)
    keys = jax.vmap(lambda j: jax.random.fold_in(jax.random.key(5), j))(jnp.arange(3))
    together = fn(params, jnp.float32(0.5), keys, tok_a, tok_b, ta, tb)
    for j in range(3):
        alone = fn(params, jnp.float32(0.5), keys[j:j + 1], tok_a, tok_b, ta, tb)
        for k in together:
            # float32: a different batching may reorder sums; 1e-5 relative is a few ulps of these O(1) losses
            assert float(alone[k][0]) == pytest.approx(float(together[k][j]), rel=1e-5)
    assert len({float(v) for v in together["finetune_excess"]}) == 3  # three different batch orders


def test_spearman_ties_and_inf():
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    assert spearman([1, 2, np.inf, np.inf], [4, 3, 2, 1]) == pytest.approx(np.corrcoef([1, 2, 3.5, 3.5], [4, 3, 2, 1])[0, 1])
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_cli_bad_input(tmp_path, capsys):
    assert cli.main(["transformer", "--preset", "ci", "--out", str(tmp_path), "--checkpoints", "1",
                     "--no-progress"]) == 2
    assert cli.main(["compare", str(tmp_path / "missing")]) == 2
    (tmp_path / "result.json").write_text("{}")
    assert cli.main(["compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("error") == 3 and "Traceback" not in err


def test_sigkill_at_a_random_moment_then_rerun_gives_the_unbroken_result(tmp_path, tiny_unbroken):
    """A run in a child process is killed (SIGKILL) at a random moment of pre-training (after a
    randomly drawn number of checkpoints and a random further delay), then rerun in the same
    folder: the result and every saved checkpoint equal those of an unbroken run, bit for bit."""
    import os
    import pickle
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    cfg = tiny_config()
    folder_a, unbroken = tiny_unbroken
    broken = tmp_path / "b"
    (tmp_path / "cfg.pkl").write_bytes(pickle.dumps(cfg))
    script = ("import pickle, sys; from experiments.run import run_experiment; "
              "run_experiment(pickle.loads(open(sys.argv[1], 'rb').read()), sys.argv[2], progress=False)")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    rng = np.random.default_rng(7)
    n_ckpt, delay = int(rng.integers(1, 4)), float(rng.uniform(0.0, 0.05))  # 1-3 of the 5 checkpoints, then 0-50 ms
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "cfg.pkl"), str(broken)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        ckpts = broken / "checkpoints"
        if ckpts.exists() and sum(p.suffix == ".npz" for p in ckpts.iterdir()) >= n_ckpt:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    assert not (broken / "result.json").exists()
    resumed = run_experiment(cfg, broken, progress=False)
    assert json.dumps(without_timing(resumed)) == json.dumps(without_timing(unbroken))
    names = sorted(p.name for p in (folder_a / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (broken / "checkpoints").iterdir() if not p.name.startswith("."))
    for name in names:
        with np.load(folder_a / "checkpoints" / name) as fa, np.load(broken / "checkpoints" / name) as fb:
            assert all(np.array_equal(fa[k], fb[k], equal_nan=True) for k in fa.files), name


# ---------------------------------------------------------------- the language from the command line


def _parsed(*argv):
    return cli.build_parser().parse_args(["transformer", "--out", "unused", *argv])


def test_language_options_each_have_one_meaning():
    from experiments.cli import config_from_args

    base = config_from_args(_parsed("--preset", "ci"))
    cfg = config_from_args(_parsed("--preset", "ci", "--vocab", "48", "--rank", "20", "--s1", "0.8", "--alpha", "1",
                                   "--ft-rank", "3", "--ft-strength", "0.3"))
    lc = cfg.language
    assert (lc.vocab, lc.rank, lc.s1, lc.alpha, lc.ft_rank, lc.ft_strength) == (48, 20, 0.8, 1.0, 3, 0.3)
    assert cfg.model.vocab_size == 48  # the model's size follows the language
    assert dataclasses.replace(cfg.model, vocab_size=base.model.vocab_size) == base.model
    # s1 no longer moves the fine-tuning chain: same change (strength, rank, kind) at any s1
    only_s1 = config_from_args(_parsed("--preset", "ci", "--s1", "0.9")).language
    assert (only_s1.ft_kind, only_s1.ft_rank, only_s1.ft_strength) == (base.language.ft_kind, base.language.ft_rank,
                                                                      base.language.ft_strength)
    from experiments.run import languages

    lang_a, second_a = languages(base)
    lang_b, second_b = languages(config_from_args(_parsed("--preset", "ci", "--s1", "0.9")))
    # the change L_B − L is the same matrix: its singular values are the fine-tuning strength, rank ft_rank
    change_a, change_b = second_a.logits - lang_a.logits, second_b.logits - lang_b.logits
    assert np.allclose(change_a, change_b, atol=1e-9)
    sv = np.linalg.svd(change_a, compute_uv=False) / lang_a.vocab
    k = base.language.ft_rank
    assert np.allclose(sv[:k], base.language.ft_strength) and sv[k] < 1e-9


@pytest.mark.parametrize("argv, message", [
    (["--rank", "64"], "--rank must lie in [1, vocab − 1 = 63]"),
    (["--vocab", "8"], "--rank must lie in [1, vocab − 1 = 7]"),  # the ci rank 32 does not fit 8 tokens
    (["--vocab", "1", "--rank", "1"], "--vocab must be at least 2"),
    (["--ft-kind", "rotate", "--ft-rank", "40"], "--ft-rank must lie in [1, 31]"),
    (["--s1", "0"], "--s1"), (["--alpha", "-1"], "--alpha"), (["--ft-strength", "inf"], "--ft-strength"),
    (["--seeds", "1,1"], "repeated seed"), (["--seeds", "1,-2"], "--seeds"),
])
def test_language_options_are_validated(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    try:  # argparse's own refusals exit through SystemExit, the configuration's through cli.main's return
        code = cli.main(["transformer", "--preset", "ci", "--out", str(out), "--no-progress", *argv])
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()  # refused before anything is written


def test_a_changed_language_is_detected_on_resume(tiny_unbroken):
    folder, _ = tiny_unbroken
    cfg = tiny_config()
    for change, key in (({"rank": 7}, "language.rank"), ({"ft_strength": 0.25}, "language.ft_strength"),
                        ({"vocab": 17}, "language.vocab")):
        with pytest.raises(ValueError, match=rf"different configuration \({key}: "):
            run_experiment(cfg.with_language(**change), folder, progress=False)


def test_theory_turn_for_rms_noise_equals_linear_theory_predict():
    """experiments.theory's turn step for relative noise from small init (E[L_pert] from the norms along
    gd_modes, on a log grid) against linear_theory.predict(noise="rms"), the fused exact sweep over every
    step: the same argmin up to the log grid's spacing; and absolute noise σ on W is σ/√V on W̃."""
    from experiments import theory
    from linear_theory import make_teacher, predict

    s = 0.5 * np.arange(1, 17, dtype=float) ** -0.5
    th = theory.RunTheory(s, 32, 16, 0.08, "", 3e-5, (0.0, 0.0), 0.9, 4000)
    for gamma in (0.5, 1.0):
        mine = theory.turn_steps(th, "relative", [gamma], rms="small-init")[0]
        exact = predict(make_teacher(s, 32, 32), 0.08, gamma, 4000, init_strength=3e-5, d_hidden=16,
                        noise="rms").inflection_step
        assert 0 < exact < 4000 and mine == pytest.approx(exact, rel=0.01)  # grid points ≤ 0.6% apart
    for sigma_w in (0.3, 0.35):  # s* = 2σ² = 0.18, 0.245: modes 5… of 16 harmful, a clear turn
        mine_abs = theory.turn_steps(th, "absolute", [sigma_w])[0]
        exact_abs = predict(make_teacher(s, 32, 32), 0.08, sigma_w / math.sqrt(32), 4000, init_strength=3e-5,
                            d_hidden=16).inflection_step
        assert 0 < exact_abs < 4000 and mine_abs == pytest.approx(exact_abs, rel=0.01)


def test_diverged_finetuning_is_named_not_silent(capsys):
    """A non-finite fine-tuning loss is null in result.json and its (rate, step) is listed in
    finetune.diverged, with one warning line per rate on stderr."""
    from experiments.run import diverged_points, warn_diverged

    nan = float("nan")
    ft = {"rates": [0.5, 0.1], "pretrain_loss": [[1.0, nan, 2.0], [1.0, 1.1, 1.2]],
          "finetune_loss": [[0.5, 0.4, None], [0.5, 0.5, 0.5]]}
    got = diverged_points(ft, [0, 10, 100])
    assert got == [{"rate": 0.5, "step": 10}, {"rate": 0.5, "step": 100}]
    warn_diverged({"finetune": {"diverged": got}})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rate 0.5" in err[0] and "10, 100" in err[0]
    assert diverged_points({**ft, "pretrain_loss": [[1.0] * 3] * 2, "finetune_loss": [[1.0] * 3] * 2},
                           [0, 10, 100]) == []


# ---------------------------------------------------------------- optimiser and regulariser options


def _quadratic_problem():
    """A pytree with a matrix and a vector, and a loss whose gradient is known in closed form."""
    rng = np.random.default_rng(0)
    p = {"w": jnp.asarray(rng.standard_normal((3, 4)), jnp.float32), "b": jnp.asarray(rng.standard_normal(4), jnp.float32)}
    target = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)

    def loss(q):
        return 0.5 * jnp.sum((q["w"] - target) ** 2) + 0.25 * jnp.sum(q["b"] ** 4)

    def grad(q):  # written out, not autodiff
        return {"w": q["w"] - target, "b": q["b"] ** 3}

    return p, loss, grad


def test_sam_sgd_decay_steps_are_the_textbook_updates():
    """make_optimizer: SAM steps equal two explicit gradients (ascent to W + ρ g/‖g‖ over all
    parameters, descent from W with the gradient there); SGD weight decay is λW on matrices only."""
    from experiments.train import make_optimizer

    p, loss, grad = _quadratic_problem()
    lr, rho, lam = 0.1, 0.05, 0.3
    opt = make_optimizer(TrainConfig(lr=lr, momentum=0.0, sam_rho=rho))
    st, q, ref = opt.init(p), p, {k: np.asarray(v, np.float64) for k, v in p.items()}
    for _ in range(3):
        g = jax.grad(loss)(q)
        upd, st = opt.update(g, st, q, grad_fn=lambda x, _: jax.grad(loss)(x))
        q = jax.tree_util.tree_map(lambda a, b: a + b, q, upd)
        gr = grad(ref)
        norm = np.sqrt(sum(np.sum(v**2) for v in gr.values()))
        adv = {k: ref[k] + rho * gr[k] / norm for k in ref}
        ref = {k: ref[k] - lr * grad(adv)[k] for k in ref}
    for k in ref:  # float32 updates of O(1) numbers, 3 steps: a few ulps
        np.testing.assert_allclose(np.asarray(q[k]), ref[k], rtol=1e-5, atol=1e-6)

    opt = make_optimizer(TrainConfig(lr=lr, momentum=0.0, weight_decay=lam))
    upd, _ = opt.update(grad(p), opt.init(p), p, grad_fn=None)
    np.testing.assert_allclose(np.asarray(upd["w"]), -lr * np.asarray(grad(p)["w"] + lam * p["w"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(upd["b"]), -lr * np.asarray(grad(p)["b"]), rtol=1e-6)  # no decay


def test_z_loss_and_logit_stats(tmp_path):
    """lm_loss with z adds z·mean(logsumexp²) of the logits (numpy from the same logits); 0 gives
    the plain loss; a short run with SAM, decay and z-loss trains and its probes record the
    logits' RMS and mean logsumexp (checked against numpy)."""
    from experiments.model import forward
    from experiments.probes import logit_stats
    from experiments.train import lm_loss

    cfg = tiny_config(sam_rho=0.02, weight_decay=0.01, z_loss=1e-3, steps=20, n_checkpoints=2)
    params = init_params(cfg.model, jax.random.key(0))
    tokens = sample(jax.random.key(1), make_language(16, 8, 0.5, 0.5, seed=0).tables(), 8, cfg.model.context + 1)
    logits = np.asarray(forward(params, cfg.model, tokens[:, :-1]), np.float64)
    lse = np.log(np.exp(logits).sum(-1))
    plain = float(lm_loss(params, cfg.model, tokens))
    ce = np.mean(lse - np.take_along_axis(logits, np.asarray(tokens[:, 1:, None]), -1)[..., 0])
    assert plain == pytest.approx(ce, rel=1e-5)
    assert float(lm_loss(params, cfg.model, tokens, 0.5)) == pytest.approx(ce + 0.5 * np.mean(lse**2), rel=1e-5)
    rms, lse_mean = logit_stats(params, cfg.model, tokens)
    assert float(rms) == pytest.approx(np.sqrt(np.mean(logits**2)), rel=1e-5)
    assert float(lse_mean) == pytest.approx(np.mean(lse), rel=1e-5)
    log = train(cfg.model, cfg.train, make_language(16, 8, 0.5, 0.5, seed=0).tables(), 0, tmp_path)
    assert log["steps"] == [0, 20] and np.isfinite(log["train_loss"][-1])


@pytest.mark.parametrize("bad", [["--momentum", "1"], ["--sam-rho", "-0.1"], ["--z-loss", "nan"],
                                 ["--optimizer", "adam"]])
def test_optimiser_options_validated(tmp_path, capsys, bad):
    try:
        code = cli.main(["transformer", "--preset", "ci", "--out", str(tmp_path / "r"), *bad])
    except SystemExit as e:  # argparse's refusal of a malformed value
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "r").exists()
