"""The linear theory for the transformer run at hand: its spectrum, rates, init and noise.

The map from a run to the theory's two-layer linear model (THEORY.md §2–§5):

- The model's direct path token embedding → unembedding is W1 = wteᵀ (d × V) and
  W2 = lm_headᵀ (V × d), with one-hot inputs of frequency ≈ 1/V. In the near-linear regime
  (s1 ≤ 1) the excess loss is ½ Σ (s_k − a_k)² = ½‖M/V − A‖², A = U diag(s) Vᵀ, M = W2W1
  (language.py). In rescaled weights W̃ = W/√V this is the theory's ½‖W̃2W̃1 − A‖² with
  whitened inputs, d_in = d_out = V, hidden width h = d_model, and a GD step η on W is a
  step η/V on W̃.
- Heavy-ball SGD with momentum β, slowly varying gradients (the slow regime of mode
  learning), moves like plain GD at rate η/(1 − β). So the theory's per-step rate is
  η̃ = lr / (1 − β) / V, and theory steps are transformer steps (no fitted time scale).
  For Adam there is no such map: its slopes and exponents (time-unit free) are computed at
  η̃ = 0.01 / s1, the gradient-flow limit.
- Init: every mode starts at the run's measured initial strength, a0 = RMS over modes of
  |a_k| at step 0 (aligned balanced init in the theory; a random init has no single a0, its
  RMS sets the scale of the log in the learning time).
- Noise: absolute std σ on W is σ/√V on W̃. Relative noise, std γ·RMS(W), is γ·RMS(W̃) on
  W̃, with ‖W̃_l‖² = N0_l + Σ a_k(t): the run's measured init norm of that matrix (÷ V)
  plus the learned aligned part (the random init stays, roughly orthogonal to what is
  learned). With N0 = 0 this is the small-init theory, where the RMS is all learned
  structure. Only the direct path's two matrices enter: the noise the transformer also
  puts on its attention, MLP and position matrices is not in the linear model.
- Fine-tuning: K steps at rate η_ft with the run's momentum → K·η̃_ft = K·η_ft/(1 − β)/V on
  the theory's B = A + δ·P Qᵀ (kind rank) or A with its top k output vectors rotated
  (kind rotate), exactly as the language's second chain is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_RISE = 0.002  # nats: a U in the theory must rise at least this much (as the transformer's must)


@dataclass(frozen=True)
class RunTheory:
    s: np.ndarray  # (r,) the run's spectrum
    vocab: int  # V = d_in = d_out
    d_hidden: int  # h = d_model
    lr: float  # η̃, theory rate per step
    lr_note: str
    a0: float  # measured initial strength
    init_sq_norms: tuple  # (N0_1, N0_2): ‖wte‖²/V and ‖lm_head‖²/V at step 0
    momentum: float  # the run's momentum (0 for Adam)
    last_step: int

    def teacher(self):
        from linear_theory import make_teacher

        return make_teacher(self.s, self.vocab, self.vocab, seed=0)

    def ft_rate(self, k_eta: float, k_steps: int) -> float:
        """The transformer's fine-tuning rate that gives K·η̃_ft = k_eta."""
        return float(k_eta / k_steps * self.vocab * (1 - self.momentum))

    def k_eta(self, rate: float, k_steps: int) -> float:
        return float(k_steps * rate / (1 - self.momentum) / self.vocab)


def run_theory(config: dict, steps, mode_strengths_0, init_sq_norms) -> RunTheory:
    """The theory's parameters for a run, from its configuration (result["config"]) and measurements."""
    lang, model, train = config["language"], config["model"], config["train"]
    s = np.asarray(lang["s1"] * np.arange(1, lang["rank"] + 1, dtype=float) ** -float(lang["alpha"]))
    v = int(lang["vocab"])
    if train["optimizer"] == "sgd":
        beta = float(train["momentum"] or 0.0)
        lr = train["lr"] / (1 - beta) / v
        note = f"η̃ = lr/(1 − β)/V = {train['lr']:g}/(1 − {beta:g})/{v} = {lr:.4g} (heavy-ball, slow regime)"
    else:
        beta, lr = 0.0, 0.01 / s[0]
        note = f"Adam: no rate map; η̃ = 0.01/s1 = {lr:.4g} (flow limit; slopes and exponents are time-unit free)"
    extras = [f"{k} {train[k]:g}" for k in ("weight_decay", "sam_rho", "z_loss") if train.get(k)]
    if extras:  # the theory record models plain (momentum) GD only
        note += "; not modelled here: " + ", ".join(extras) + " (the linear model's answer for weight decay and " \
                "optimisers: linear-theory predict --weight-decay, linear-theory optimizers)"
    a = np.asarray(mode_strengths_0, float)
    a0 = float(np.sqrt(np.mean(a**2)))
    n0 = tuple(float(x) / v for x in init_sq_norms)
    return RunTheory(s, v, int(model["d_model"]), float(lr), note, a0, n0, beta, int(steps[-1]))


def from_result(result: dict) -> RunTheory:
    """The RunTheory of a finished run, from its stored record (result["theory"]) and spectrum."""
    t = result["theory"]
    return RunTheory(np.asarray(result["target_strengths"], float), int(t["vocab"]), int(t["d_hidden"]),
                     float(t["lr"]), t["lr_note"], float(t["a0"]), tuple(t["init_sq_norms"]), float(t["momentum"]),
                     int(result["steps"][-1]))


def horizon(th: RunTheory, fraction: float = 0.9) -> int:
    """Steps until every mode within the width passes `fraction` of its target (flow estimate × 2, ≥ last step)."""
    s = th.s[: th.d_hidden]
    t = np.log(fraction / (1 - fraction) * s / th.a0) / (2 * s)  # flow time to a = fraction·s
    return int(max(th.last_step, np.ceil(2 * t.max() / th.lr)))


def log_grid(last: int, n: int = 1500) -> np.ndarray:
    return np.unique(np.concatenate([[0], np.round(np.geomspace(1, last, n))])).astype(int)


def trajectory(th: RunTheory, checkpoints):
    """Exact GD (linear_theory.gd_modes) from aligned balanced init at the measured a0."""
    from linear_theory import gd_modes

    return gd_modes(th.teacher(), th.lr, np.asarray(checkpoints), init_strength=th.a0, d_hidden=th.d_hidden)


RMS_VARIANTS = ("measured", "init", "small-init")


def perturbed_loss(th: RunTheory, traj, kind: str, sigma: float, rms: str = "init", measured=None) -> np.ndarray:
    """E[L_pert] along `traj` (exact for any weights, linear_theory.sensitivity_from_norms) for the run's
    noise: absolute std σ on W, or relative std σ·RMS(W), the RMS being
      "measured":   the transformer's own RMS of wte and lm_head at each step (`measured` = (steps, rms_wte,
                    rms_lm_head), log-interpolated in step, held after the last checkpoint), init included;
      "init":       the theory's, ‖W̃‖² = N0 + Σa with the run's measured init norm N0;
      "small-init": the theory's from small init, ‖W̃‖² = Σa (RMS all learned structure)."""
    from linear_theory import sensitivity_from_norms

    v, h = th.vocab, th.d_hidden
    n0 = np.zeros(2) if rms == "small-init" else np.asarray(th.init_sq_norms)
    learned = np.asarray(traj.w1_sq_norm)  # = ‖W2‖² = Σ a (balanced)
    n1, n2 = n0[0] + learned, n0[1] + learned
    if kind == "absolute":
        s1 = s2 = np.full_like(learned, sigma / np.sqrt(v))
    elif kind == "relative" and rms == "measured":
        st, r1, r2 = (np.asarray(x, float) for x in measured)
        x = np.log(np.maximum(np.asarray(traj.times, float), 1.0))
        xp = np.log(np.maximum(st, 1.0))
        s1, s2 = (sigma * np.exp(np.interp(x, xp, np.log(r))) / np.sqrt(v) for r in (r1, r2))  # RMS(W̃) = RMS(W)/√V
    elif kind == "relative":
        s1, s2 = sigma * np.sqrt(n1 / (h * v)), sigma * np.sqrt(n2 / (h * v))
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return np.asarray(traj.loss) + sensitivity_from_norms(n1, n2, v, v, h, s1, s2)


def turn_steps(th: RunTheory, kind: str, sigmas, rms: str = "init", measured=None, traj=None):
    """Theory's step of the perturbed-loss minimum for each σ (None where the minimum is not interior or
    the rise after it is below MIN_RISE), over a dense log grid to `horizon` (or along `traj`)."""
    traj = trajectory(th, log_grid(horizon(th))) if traj is None else traj
    grid = np.asarray(traj.times)
    out = []
    for sigma in sigmas:
        p = perturbed_loss(th, traj, kind, float(sigma), rms, measured)
        c = int(np.argmin(p))
        interior = 0 < c < len(p) - 1 and p[-1] - p[c] > MIN_RISE
        out.append(int(grid[c]) if interior else None)
    return out


def exponent(sigmas, turn_steps_) -> tuple[float, float, int]:
    """(x, se, n): least-squares slope of log(step of the minimum) against log σ over the σ with a turn,
    step ∝ σ^x (scipy.stats.linregress; se nan with 2 points)."""
    from scipy import stats

    pts = [(s, t) for s, t in zip(sigmas, turn_steps_) if t is not None and t > 0 and s > 0]
    if len(pts) < 2:
        return float("nan"), float("nan"), len(pts)
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    if len(pts) == 2:
        return float((y[1] - y[0]) / (x[1] - x[0])), float("nan"), 2
    fit = stats.linregress(x, y)
    return float(fit.slope), float(fit.stderr), len(pts)


# ---------------------------------------------------------------- fine-tuning


def finetune_teacher_target(th: RunTheory, lang_cfg: dict) -> np.ndarray:
    """The theory's fine-tuning target B, built as the language's second chain is (language.finetune_language)."""
    from linear_theory import finetune_target

    teacher = th.teacher()
    if lang_cfg["ft_kind"] == "rank":
        return finetune_target(teacher, "rank", size=float(lang_cfg["ft_strength"]), rank=int(lang_cfg["ft_rank"]))
    k, angle = int(lang_cfg["ft_rank"]), float(lang_cfg["ft_angle"])
    rng = np.random.default_rng(1)
    w = rng.standard_normal((th.vocab, k))
    w -= teacher.V @ (teacher.V.T @ w)
    w = np.linalg.qr(w)[0]
    v = teacher.V.copy()
    v[:, :k] = np.cos(angle) * v[:, :k] + np.sin(angle) * w
    return (teacher.U * teacher.s) @ v.T


def finetune_curves(th: RunTheory, lang_cfg: dict, steps, k_steps: int, k_etas) -> list[dict]:
    """The theory's fine-tuning sweep (linear_theory.finetune_sweep: full-matrix GD from aligned init at a0,
    at the run's checkpoint steps) for each K·η̃_ft: pre-training-chain and fine-tuning-chain losses after
    K steps, and whether the first is U-shaped (interior minimum, rise to the end > MIN_RISE)."""
    from linear_theory import finetune_sweep

    teacher, target = th.teacher(), finetune_teacher_target(th, lang_cfg)
    out = []
    for ke in k_etas:
        sw = finetune_sweep(teacher, target, th.d_hidden, th.lr, np.asarray(steps), finetune_lr=ke / k_steps,
                            finetune_steps=k_steps, init_strength=th.a0)
        la, lb = np.asarray(sw.pretrain_loss_after, float), np.asarray(sw.finetune_loss_after, float)
        c = int(np.argmin(la))
        rise = float(la[-1] - la[c])
        out.append({"k_eta": float(ke), "pretrain_after": la.tolist(), "finetune_after": lb.tolist(),
                    "argmin_step": int(steps[c]), "rise": rise,
                    "u": bool(0 < c < len(la) - 1 and rise > MIN_RISE and np.all(np.isfinite(la)))})
    return out


def u_window(curves) -> tuple[float, float] | None:
    """(lowest, highest) K·η̃ of the sweep with a U, or None."""
    ks = [c["k_eta"] for c in curves if c["u"]]
    return (min(ks), max(ks)) if ks else None


def sweep_points(window, n: int = 3) -> list[float]:
    """n K·η̃ values log-evenly inside the window (at 1/(n+1) … n/(n+1) of its log range; the middle
    one at its geometric centre)."""
    lo, hi = window
    return [float(lo * (hi / lo) ** (j / (n + 1))) for j in range(1, n + 1)] if hi > lo else [float(lo)] * 1


K_ETA_GRID = tuple(float(x) for x in np.geomspace(0.3, 100, 16))  # where the U window is searched


def theory_record(config: dict, steps, mode_strengths_0, init_sq_norms) -> dict:
    """What a run stores about its theory (DIR/theory.json): the rate map, a0, init norms, and for SGD the
    fine-tuning sweep over K_ETA_GRID, the U window, the sweep points inside it and their rates (used
    when the configuration leaves the fine-tuning rates to the theory), with the theory's curves there."""
    th = run_theory(config, steps, mode_strengths_0, init_sq_norms)
    rec = {"lr": th.lr, "lr_note": th.lr_note, "a0": th.a0, "init_sq_norms": list(th.init_sq_norms),
           "momentum": th.momentum, "vocab": th.vocab, "d_hidden": th.d_hidden}
    k = int(config["finetune"]["steps"])
    if config["train"]["optimizer"] != "sgd":
        rec["finetune"] = {"window": None, "rates": [], "note": "Adam: no map from its rate to the theory's"}
        return rec
    grid = finetune_curves(th, config["language"], steps, k, K_ETA_GRID)
    window = u_window(grid)
    if config["finetune"]["rates"]:
        points = [th.k_eta(r, k) for r in config["finetune"]["rates"]]
        note = "rates fixed by the configuration (not chosen from the window)"
    elif window is not None:
        points, note = sweep_points(window), "sweep points log-evenly inside the U window"
    else:  # no U anywhere on the grid: the K·η̃ of the theory's largest rise (a U that is too small or not interior)
        points = [grid[int(np.argmax([c["rise"] for c in grid]))]["k_eta"]]
        note = "the theory shows no U on the grid; one point at its largest rise"
    rec["finetune"] = {
        "k_steps": k, "k_eta_grid": list(K_ETA_GRID), "u": [c["u"] for c in grid], "rise": [c["rise"] for c in grid],
        "argmin_step": [c["argmin_step"] for c in grid], "window": list(window) if window else None, "note": note,
        "k_eta_points": points, "rates": [th.ft_rate(x, k) for x in points],
        "curves": finetune_curves(th, config["language"], steps, k, points)}
    return rec
