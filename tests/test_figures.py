"""The theory figures: each made on its small config, its plotted data checked against the
theory through independent package functions, its files written; and the CLI contract."""

import json

import jax
import numpy as np
import pytest

from figures import registry
from figures._output import save_figure
from linear_theory import Schedule, gd_modes, gradient_flow, init_weights, make_teacher, parse_spectrum, simulate_gd
from linear_theory._finetune import finetune_target
from linear_theory import expected_perturbed_loss, hessian_trace, modal_expected_perturbed_loss, sensitivity
from linear_theory._predict import predict
from linear_theory._spectral import aligned_weights
from linear_theory._trajectory import modal_loss


def teacher_of(cfg):
    s = parse_spectrum(cfg.spectrum) if ":" in cfg.spectrum else [float(x) for x in cfg.spectrum.split(",")]
    return make_teacher(s, cfg.d_in, cfg.d_out, seed=cfg.teacher_seed)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """made(name) -> (small config, Figure, data, written paths), each figure made once."""
    out = tmp_path_factory.mktemp("figures")
    cache = {}

    def get(name):
        if name not in cache:
            make, config = registry.FIGURES[name].load()
            cfg = config.small()
            fig, data = make(cfg)
            cache[name] = (cfg, fig, data, save_figure(fig, data, out, name, formats=("png",)))
        return cache[name]

    return get


# ------------------------------------------------------------------ every figure


@pytest.mark.parametrize("name", registry.names())
def test_files_written_and_axes_labelled(made, name):
    cfg, fig, data, paths = made(name)
    assert [p.suffix for p in paths] == [".png", ".json"]  # PDF: see the CLI tests
    for p in paths:
        assert p.is_file() and p.stat().st_size > 1000
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(paths[1].read_text())
    assert saved["figure"] == name and {"config", "units", "predictions"} <= saved.keys()
    assert saved["config"]["d_in"] == cfg.d_in
    for ax in fig.axes:  # panels and colour bars: labelled, or sharing the axis with a labelled panel
        if ax.get_label() == "<colorbar>":  # labelled along its long side, vertical or horizontal
            assert ax.get_ylabel() or ax.get_xlabel(), f"{name}: unlabelled colour bar"
            continue
        assert any(a.get_ylabel() for a in ax.get_shared_y_axes().get_siblings(ax)), f"{name}: unlabelled y axis"
        assert any(a.get_xlabel() for a in ax.get_shared_x_axes().get_siblings(ax)), f"{name}: unlabelled x"


def test_registry_small_configs_are_frozen():
    for spec in registry.FIGURES.values():
        _, config = spec.load()
        with pytest.raises(Exception):
            config.small().lr = 1.0  # frozen dataclass


# ------------------------------------------------------------------ 1. dynamics


def test_dynamics_lines_are_the_closed_form_and_gd_tracks_them(made):
    cfg, _, data, _ = made("dynamics")
    teacher = teacher_of(cfg)
    s = teacher.s
    W1, W2 = init_weights(teacher, cfg.d_hidden, "random", init_std=cfg.init_std, seed=cfg.seed)
    a0 = np.array([np.sum((W1 @ teacher.V[:, i] + W2.T @ teacher.U[:, i]) ** 2) / 4 for i in range(s.size)])
    np.testing.assert_allclose(data["effective_init_strength"], a0, rtol=1e-12)
    steps = data["closed_form"]["steps"]
    flow = gradient_flow(teacher, cfg.lr * steps, a0, cfg.d_hidden)
    np.testing.assert_allclose(data["closed_form"]["mode_strengths"], flow.mode_strengths, rtol=1e-12)
    # The loss falls to ~1e-10 by the end: a relative tolerance alone would ask for more than the
    # round-off of ½Σ(s_i − a_i)² allows (a few ulps of its largest value, the initial loss).
    loss_ref = modal_loss(teacher, flow.mode_strengths)
    np.testing.assert_allclose(data["closed_form"]["loss"], loss_ref, rtol=1e-12,
                               atol=64 * np.finfo(float).eps * np.max(loss_ref))
    assert np.all(np.diff(data["closed_form"]["loss"]) <= 1e-15)  # the staircase only goes down
    # Markers: full-matrix GD from the random init follows the exact map from its effective a0.
    marker_steps = data["gradient_descent"]["steps"]
    ref = gd_modes(teacher, cfg.lr, marker_steps, a0, cfg.d_hidden)
    assert np.all(np.abs(data["gradient_descent"]["mode_strengths"] - ref.mode_strengths) <= 0.1 * s)
    learned = [k for k in data["learning_steps_gd"] if k is not None]
    assert len(learned) == s.size and learned == sorted(learned)  # largest first


# ------------------------------------------------------------------ 2. sensitivity


def test_sensitivity_rises_and_matches_exact_and_monte_carlo(made):
    cfg, _, data, _ = made("sensitivity")
    teacher = teacher_of(cfg)
    sens = data["sensitivity"]
    assert np.all(np.diff(sens, axis=1) >= -1e-15), "sensitivity must be non-decreasing in steps"
    assert np.all(sens[:, -1] > sens[:, 0])
    np.testing.assert_allclose(data["critical_singular_value"], np.square(cfg.sigmas) * (cfg.d_in + cfg.d_out))
    mc = data["monte_carlo"]
    traj = gd_modes(teacher, cfg.lr, mc["steps"], cfg.init_strength, cfg.d_hidden)
    W1, W2 = aligned_weights(teacher, traj.mode_strengths, cfg.d_hidden)
    for k, sigma in enumerate(cfg.sigmas):
        exact = sensitivity(W1, W2, sigma)  # full-matrix formula on rebuilt weights
        at = np.searchsorted(data["steps"], mc["steps"])
        np.testing.assert_allclose(sens[k, at], exact, rtol=1e-9)
        assert np.all(np.abs(mc["sensitivity"][k] - exact) <= 4 * mc["stderr"][k])


# ------------------------------------------------------------------ 3. the U


def test_u_shape_marks_the_predicted_inflection(made):
    cfg, _, data, _ = made("u_shape")
    teacher = teacher_of(cfg)
    steps, epl = data["steps"], data["expected_perturbed_loss"]
    for k, sigma in enumerate(cfg.sigmas):
        p = predict(teacher, cfg.lr, sigma, cfg.max_steps, cfg.init_strength, cfg.d_hidden)
        assert data["inflection_step"][k] == p.inflection_step
        assert data["inflection_step_estimate"][k] == pytest.approx(p.inflection_step_estimate)
        assert steps[np.argmin(epl[k])] == p.inflection_step  # the marker sits at the curve's minimum
        assert 0 < p.inflection_step < cfg.max_steps  # an interior turn: a U
    assert np.all(np.diff(data["inflection_step"]) <= 0), "larger σ turns earlier"
    traj = gd_modes(teacher, cfg.lr, steps[::7], cfg.init_strength, cfg.d_hidden)
    W1, W2 = aligned_weights(teacher, traj.mode_strengths, cfg.d_hidden)
    np.testing.assert_allclose(epl[-1, ::7], expected_perturbed_loss(W1, W2, teacher, cfg.sigmas[-1]), rtol=1e-9)
    np.testing.assert_allclose(data["clean_loss"][::7], traj.loss, rtol=1e-12)


# ------------------------------------------------------------------ 4. phase diagram


def test_phase_heat_map_is_the_expected_perturbed_loss(made):
    cfg, _, data, _ = made("phase")
    teacher = teacher_of(cfg)
    sigmas, steps, heat = data["sigmas"], data["steps"], data["expected_perturbed_loss"]
    assert heat.shape == (sigmas.size, steps.size)
    t_idx = [1, steps.size // 2, steps.size - 1]
    traj = gd_modes(teacher, cfg.lr, steps[t_idx], cfg.init_strength, cfg.d_hidden)
    for j in (0, sigmas.size // 2, sigmas.size - 1):
        want = modal_expected_perturbed_loss(teacher, traj.mode_strengths, cfg.d_hidden, sigmas[j])
        np.testing.assert_allclose(heat[j, t_idx], want, rtol=1e-12)
        p = predict(teacher, cfg.lr, sigmas[j], cfg.max_steps, cfg.init_strength, cfg.d_hidden)
        assert data["inflection_step"][j] == p.inflection_step
    np.testing.assert_allclose(data["critical_singular_value"], sigmas**2 * (cfg.d_in + cfg.d_out))
    np.testing.assert_allclose(data["sigma_where_mode_turns_harmful"] ** 2 * (cfg.d_in + cfg.d_out), teacher.s)


# ------------------------------------------------------------------ 5. noise thresholds


def test_threshold_marks_modes_learned_below_the_noise(made):
    cfg, _, data, _ = made("threshold")
    teacher = teacher_of(cfg)
    s = teacher.s
    s_star = cfg.sigma**2 * (cfg.d_in + cfg.d_out)
    assert data["critical_singular_value"] == pytest.approx(s_star)
    np.testing.assert_array_equal(data["harmful"], s < s_star)
    assert data["harmful"].any() and not data["harmful"].all()
    p = predict(teacher, cfg.lr, cfg.sigma, cfg.max_steps, cfg.init_strength, cfg.d_hidden)
    assert data["inflection_step"] == p.inflection_step
    steps, a = data["steps"], data["mode_strengths"]
    for i, k in enumerate(data["mode_learning_steps"]):
        j = int(np.searchsorted(steps, k))
        assert a[j, i] >= s[i] / 2 > a[j - 1, i]  # the marker is the first crossing of s_i/2
    # The turn comes once the modes being learned are below s*: every harmful mode after it.
    harmful_learned = {i for i in np.flatnonzero(data["harmful"]) if data["mode_learning_steps"][i] is not None}
    assert harmful_learned <= set(data["modes_learned_after_inflection"])
    floor = data["factor_noise"]["operator_norm"]
    assert floor[-1] > floor[0] > 0  # the end-to-end perturbation grows with the weights


# ------------------------------------------------------------------ 6. fine-tuning


def test_finetune_curves_match_an_independent_fine_tuning_run(made):
    cfg, _, data, _ = made("finetune")
    teacher = teacher_of(cfg)
    T = data["pretrain_steps"]
    for run in data["runs"]:
        assert run["turning_step"] == T[np.argmin(run["pretrain_loss_after"])]
    run = max(data["runs"], key=lambda r: (r["finetune_l2"], r["finetune_lr"]))
    t = T[T.size // 2]
    pre = simulate_gd(teacher, cfg.d_hidden, cfg.lr, [t], init="aligned", init_strength=cfg.init_strength,
                      seed=cfg.seed, record_weights=True)
    W1, W2 = pre.W1[0].copy(), pre.W2[0].copy()
    W1T, W2T = W1.copy(), W2.copy()
    B = finetune_target(teacher, "rank", cfg.change_size, cfg.change_rank, cfg.change_seed)
    eta, lam = run["finetune_lr"], run["finetune_l2"]
    for _ in range(cfg.finetune_steps):  # plain numpy GD on ½‖W2W1 − B‖² + ½λ‖W − W(T)‖²
        E = W2 @ W1 - B
        W1, W2 = W1 - eta * (W2.T @ E + lam * (W1 - W1T)), W2 - eta * (E @ W1.T + lam * (W2 - W2T))
    k = T.size // 2
    assert run["pretrain_loss_after"][k] == pytest.approx(0.5 * np.sum((W2 @ W1 - teacher.matrix) ** 2), rel=1e-9)
    assert run["finetune_loss_after"][k] == pytest.approx(0.5 * np.sum((W2 @ W1 - B) ** 2), rel=1e-9)
    # The larger fixed rate damages the pre-training task more once modes are learned.
    by = {(r["finetune_lr"], r["finetune_l2"]): r for r in data["runs"]}
    lo, hi = min(cfg.finetune_lrs), max(cfg.finetune_lrs)
    assert by[(hi, 0.0)]["pretrain_loss_after"][-1] > by[(lo, 0.0)]["pretrain_loss_after"][-1]
    assert by[(hi, 0.0)]["rise"] > by[(hi, max(cfg.finetune_l2s))]["rise"]  # λ > 0 tames the rise


# ------------------------------------------------------------------ 7. schedules


def test_schedules_mark_the_predicted_turns(made):
    cfg, _, data, _ = made("schedules")
    teacher = teacher_of(cfg)
    rises = {}
    for kind, cur in data["schedules"].items():
        sched = Schedule() if kind == "constant" else Schedule(kind, total_steps=cfg.max_steps,
                                                               warmup_steps=cfg.warmup_steps,
                                                               decay_fraction=cfg.decay_fraction)
        p = predict(teacher, cfg.lr, cfg.sigma, cfg.max_steps, cfg.init_strength, cfg.d_hidden, schedule=sched)
        assert cur["inflection_step"] == p.inflection_step
        assert data["steps"][np.argmin(cur["expected_perturbed_loss"])] == p.inflection_step
        for k in (0, cfg.max_steps // 2, cfg.max_steps - 1):  # the float64 rate the dynamics use
            with jax.enable_x64(True):
                expected = cfg.lr * float(sched(np.int64(k)))
            assert cur["learning_rate"][k] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        rises[kind] = cur["rise"]
    assert rises["cosine"] < rises["constant"] and rises["wsd"] < rises["constant"]


# ------------------------------------------------------------------ 8. sharpness


def test_sharpness_sensitivity_is_half_sigma_squared_trace(made):
    cfg, _, data, _ = made("sharpness")
    teacher = teacher_of(cfg)
    steps, trace = data["steps"], data["hessian_trace"]
    traj = simulate_gd(teacher, cfg.d_hidden, cfg.lr, steps, init="random", init_std=cfg.init_std, seed=cfg.seed)
    np.testing.assert_allclose(trace, cfg.d_in * traj.w2_sq_norm + cfg.d_out * traj.w1_sq_norm, rtol=1e-9)
    assert trace[-1] > 100 * trace[0]
    sig = np.asarray(cfg.sigmas)[:, None]
    exact = 0.5 * sig**2 * trace + 0.5 * sig**4 * cfg.d_in * cfg.d_hidden * cfg.d_out
    np.testing.assert_allclose(data["exact_sensitivity"], exact, rtol=1e-12)
    mc = data["monte_carlo"]
    assert np.all(np.abs(mc["sensitivity"] - exact) <= 4 * mc["stderr"])
    h = data["hutchinson"]
    assert np.all(np.abs(h["estimate"] - trace) <= 4 * h["stderr"] + 1e-9)
    line = data["hessian_trace_line"]
    W = simulate_gd(teacher, cfg.d_hidden, cfg.lr, line["steps"][-1:], init="random", init_std=cfg.init_std,
                    seed=cfg.seed, record_weights=True)
    assert line["exact"][-1] == pytest.approx(float(hessian_trace(W.W1[0], W.W2[0])), rel=1e-9)


# ------------------------------------------------------------------ CLI


def test_cli_list(run_cli):
    code, out, err = run_cli(["figures", "--list"])
    assert code == 0 and err == ""
    for name in registry.names():
        assert name in out
    code, out, _ = run_cli(["figures", "--list", "--json"])
    assert code == 0 and [f["name"] for f in json.loads(out)["figures"]] == registry.names()


def test_cli_unknown_name_is_a_one_line_usage_error(run_cli):
    code, out, err = run_cli(["figures", "u_shape", "no_such_figure"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "no_such_figure" in err
    for name in registry.names():
        assert name in err


def test_cli_out_must_be_a_folder(run_cli, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, out, err = run_cli(["figures", "--small", "--out", str(f), "u_shape"])
    assert code == 2 and out == "" and err.count("\n") == 1


def test_cli_json_is_one_object_and_files_exist(run_cli, tmp_path):
    code, out, err = run_cli(["figures", "--small", "--formats", "pdf,png", "--json", "--out", str(tmp_path),
                              "u_shape"])
    assert code == 0
    payload = json.loads(out)  # the whole of stdout is one JSON object
    assert err == ""  # one figure: no progress bar
    assert [f.split(".")[-1] for f in payload["files"]] == ["pdf", "png", "json"]
    for f in payload["files"]:
        assert (tmp_path / f.split("/")[-1]).stat().st_size > 1000
    assert (tmp_path / "u_shape.pdf").read_bytes()[:5] == b"%PDF-"
    assert payload["figures"][0]["predictions"]


def test_cli_table_and_progress_for_several(run_cli, tmp_path):
    code, out, err = run_cli(["figures", "--small", "--out", str(tmp_path), "schedules", "u_shape"])
    assert code == 0
    assert "inflection step" in out and f"wrote 4 files to {tmp_path}" in out
    preds = out.split("\n\n")[0]  # the predictions (the files table holds paths of any length)
    assert max(len(line) for line in preds.splitlines()) <= 100
    assert "figures" in err  # the progress bar, on stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # --small: PNG only
        f"{n}.{e}" for n in ("schedules", "u_shape") for e in ("png", "json"))


@pytest.mark.parametrize("bad", ["svg", "png,png", "", "png,"])
def test_cli_bad_formats_refused(run_cli, tmp_path, bad):
    code, out, err = run_cli(["figures", "--formats", bad, "--out", str(tmp_path), "u_shape"])
    assert code == 2 and out == "" and err.count("\n") == 1 and "--formats" in err
    assert not any(tmp_path.iterdir())
