"""Figure 9, mitigations: the expected perturbed loss E[L_pert](t) under Gaussian weight noise of
std σ, and the clean loss it costs, for plain GD and its alternatives.

Exact per-mode GD maps (every step): plain GD, GD with the noise-optimal weight decay
(λ1, λ2) = (σ²d_out, σ²d_in) (GD on E[L_pert] itself: no turn, and its fixed point is the
best model under noise, marked by the dashed line), GD with one λ = s*/2 on both layers, and
a cosine schedule. Full-matrix optax runs from the same aligned init: heavy-ball momentum,
Adam, sign descent and SAM (ρ). The turn of each curve (exact interior argmin over steps, with a
rise beyond round-off after it) is a dot; a curve that only falls, or never falls, has none.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from linear_theory import (Schedule, balanced_noise_optimal_weight_decay, critical_singular_value, decayed_fixed_point,
                           gd_modes, noise_optimal_weight_decay, roundoff_tolerance, sensitivity_from_norms,
                           train_optax)

from . import _style as st
from ._output import config_dict
from ._setup import Problem, build_teacher

COLORS = {"GD": "#8a8a8a", "GD + noise-optimal λ1, λ2": "#2ca02c", "GD + λ = s*/2": "#98df8a",
          "GD, cosine schedule": "#1f77b4", "momentum": "#9467bd", "Adam": "#d62728", "sign descent": "#ff7f0e",
          "SAM": "#8c564b"}


@dataclasses.dataclass(frozen=True)
class MitigationsConfig(Problem):
    """The README problem; rates per optimiser (adaptive ones are per-entry steps)."""

    init_strength: float = 1e-6
    sigma: float = 0.05
    max_steps: int = 1500
    momentum: float = 0.9
    momentum_lr: float = 0.005  # η/(1 − β) = 0.05: the same effective rate as GD
    adaptive_lr: float = 1e-3  # Adam and sign descent: weight units per step
    sam_rho: float = 0.01

    @classmethod
    def small(cls):
        return cls(spectrum="1,0.5,0.2,0.1", d_in=6, d_hidden=4, d_out=5, lr=0.1, sigma=0.15, max_steps=400,
                   momentum_lr=0.01, adaptive_lr=3e-3, init_strength=1e-4)


def _epl(teacher, h, sigma, traj):
    """E[L_pert] from a trajectory's loss and norms (exact for any weights, whitened)."""
    return traj.loss + sensitivity_from_norms(traj.w1_sq_norm, traj.w2_sq_norm, teacher.d_in, teacher.d_out, h,
                                              sigma)


@st.styled
def make_mitigations(config: MitigationsConfig = MitigationsConfig()):
    c = config
    teacher = build_teacher(c.spectrum, c.d_in, c.d_out, c.teacher_seed)
    h, n = c.d_hidden, c.max_steps
    steps = np.arange(n + 1)
    l1, l2 = noise_optimal_weight_decay(teacher, c.sigma)
    lam = balanced_noise_optimal_weight_decay(teacher, c.sigma)
    s_star = float(critical_singular_value(c.d_in, c.d_out, c.sigma))
    curves = {}
    for name, kw in (("GD", {}), ("GD + noise-optimal λ1, λ2", dict(weight_decay=(l1, l2))),
                     ("GD + λ = s*/2", dict(weight_decay=lam)),
                     ("GD, cosine schedule", dict(schedule=Schedule("cosine", total_steps=n)))):
        traj = gd_modes(teacher, c.lr, steps, c.init_strength, h, **kw)
        curves[name] = dict(expected_perturbed_loss=_epl(teacher, h, c.sigma, traj), clean_loss=traj.loss)
    common = dict(sigmas=[c.sigma], init_strength=c.init_strength, checkpoints=[])
    for name, opt, lr, kw in (("momentum", "momentum", c.momentum_lr, dict(momentum=c.momentum)),
                              ("Adam", "adam", c.adaptive_lr, {}), ("sign descent", "sign", c.adaptive_lr, {}),
                              ("SAM", "sam", c.lr, dict(rho=c.sam_rho))):
        run = train_optax(teacher, h, opt, lr, n, **common, **kw)
        curves[name] = dict(expected_perturbed_loss=run.expected_perturbed_loss[0], clean_loss=run.loss,
                            hessian_trace_at_end=float(run.hessian_trace[-1]))
    a, n1, n2 = decayed_fixed_point(teacher, (l1, l2), h)
    best = 0.5 * float(np.sum((a - teacher.s) ** 2)) + float(
        sensitivity_from_norms(n1.sum(), n2.sum(), teacher.d_in, teacher.d_out, h, c.sigma))
    tol = roundoff_tolerance(teacher.rank)  # relative round-off of E[L_pert], as `predict` uses
    for cur in curves.values():
        e = cur["expected_perturbed_loss"]
        k = int(np.argmin(e))
        rise = float(e[-1] - e[k])
        # a turn: E[L_pert] falls to an interior minimum and rises after it by more than round-off
        turns = bool(0 < k < e.size - 1 and rise > tol * float(np.max(np.abs(e[k:]))))
        cur.update(turn_step=k, turns=turns, rise=rise, clean_loss_at_end=float(cur["clean_loss"][-1]))

    fig, axes = st.new_figure(1, 2, height=3.8, width=st.WIDTH * 1.25)
    ax, axc = axes[0]
    x = np.maximum(steps, 1)
    for name, cur in curves.items():
        col = COLORS[name]
        e, k = cur["expected_perturbed_loss"], cur["turn_step"]
        label = f"SAM ρ = {c.sam_rho:g}" if name == "SAM" else name
        what = f"turn {k}, rise {cur['rise']:.2g}" if cur["turns"] else f"no turn (least at step {k})"
        ax.plot(x, e, color=col, lw=2.2 if name.startswith("GD +") else 1.3, label=f"{label}: {what}")
        if cur["turns"]:
            ax.plot(max(k, 1), e[k], "o", color=col, ms=5, mec="white", mew=0.8, zorder=5)
        axc.plot(x, cur["clean_loss"], color=col, label=name)
    ax.axhline(best, color=COLORS["GD + noise-optimal λ1, λ2"], ls="--", lw=0.9,
               label=f"min over all weights (noise-optimal λ1, λ2 = {l1:.3g}, {l2:.3g})")
    lo = min(cur["expected_perturbed_loss"].min() for cur in curves.values())
    finals = [cur["expected_perturbed_loss"][-1] for cur in curves.values()]
    span = 3 * max(f - lo for f in finals if f < lo + 0.5 * abs(lo))  # zoom on the turns (a stalled run leaves)
    ax.set_ylim(lo - 0.1 * span, lo + span)
    ax.set_ylabel(st.PERTURBED_LOSS)
    ax.set_title(f"E[L_pert] under noise σ = {c.sigma:g} (s* = {s_star:.3g})")
    ax.legend(loc="upper right", fontsize=6)
    st.steps_axis(ax, None)
    axc.set_yscale("log")
    axc.set_ylabel(st.LOSS)
    axc.set_title("what the clean loss pays")
    st.steps_axis(axc, None)

    data = dict(
        description="expected perturbed loss and clean loss along GD, GD with weight decay (noise-optimal and "
                    "s*/2), a cosine schedule, and optax momentum, Adam, sign descent and SAM",
        config=config_dict(c),
        units={"steps": "optimizer steps", "loss": "½‖·‖²_F; E over Gaussian weight noise of std σ per entry",
               "weight_decay": "coefficient λ of (λ/2)‖W‖² (loss units per squared weight unit)",
               "hessian_trace": "tr H of L (loss per squared weight unit)"},
        singular_values=teacher.s,
        critical_singular_value=s_star,
        noise_optimal_weight_decay={"W1": l1, "W2": l2, "single": lam},
        noise_optimal_expected_perturbed_loss=best,
        steps=steps,
        curves=curves,
        predictions={f"{name}: turn step, rise, clean loss at end":
                     (f"{cur['turn_step']}, {cur['rise']:.3g}" if cur["turns"]
                      else f"no turn (least at step {cur['turn_step']}), -")
                     + f", {cur['clean_loss_at_end']:.3g}" for name, cur in curves.items()},
    )
    return fig, data
