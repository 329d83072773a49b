"""Figure 7, learning-rate schedules: the perturbed-loss curve and its turn under constant,
cosine and warmup-stable-decay (WSD) pre-training at the same peak rate.

Every step of the exact GD map from aligned balanced init is drawn, with the rate
η_k = lr × schedule(k) (THEORY.md §2); the decays end at the last step. The annealed
schedules learn the late (small, harmful) modes more slowly, so the rise after the turn
is smaller, but the turn itself does not go away.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from linear_theory import gd_modes
from linear_theory import critical_singular_value, modal_expected_perturbed_loss
from linear_theory import schedule_inflections

from . import _style as st
from ._output import config_dict
from ._setup import Problem, build_teacher


@dataclasses.dataclass(frozen=True)
class SchedulesConfig(Problem):
    """One σ, one run length; warmup and WSD decay fraction shared by the decaying schedules."""

    init_strength: float = 1e-6  # a0 of the aligned balanced init
    spectrum: str = "power:16:1:1"
    sigma: float = 0.08
    max_steps: int = 1500
    warmup_steps: int = 0
    decay_fraction: float = 0.5

    @classmethod
    def small(cls):
        return cls(spectrum="1,0.5,0.2,0.1", d_in=6, d_hidden=4, d_out=5, lr=0.1, sigma=0.15, max_steps=400)


@st.styled
def make_schedules(config: SchedulesConfig = SchedulesConfig()):
    c = config
    teacher = build_teacher(c.spectrum, c.d_in, c.d_out, c.teacher_seed)
    s_star = float(critical_singular_value(c.d_in, c.d_out, c.sigma))
    turns = schedule_inflections(teacher, c.lr, c.sigma, c.max_steps, c.warmup_steps, c.decay_fraction,
                                 c.init_strength, c.d_hidden)
    steps = np.arange(c.max_steps + 1)
    curves = {}
    for kind, res in turns.items():
        sched = res["schedule"]
        traj = gd_modes(teacher, c.lr, steps, c.init_strength, c.d_hidden, sched)
        curves[kind] = dict(
            expected_perturbed_loss=modal_expected_perturbed_loss(teacher, traj.mode_strengths, c.d_hidden, c.sigma),
            clean_loss=traj.loss,
            learning_rate=c.lr * sched.values(steps),
            inflection_step=res["inflection_step"],
            rise=res["expected_perturbed_loss_at_max_steps"] - res["min_expected_perturbed_loss"],
        )

    fig, axes = st.new_figure(2, 1, height=5.8, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    ax, axr = axes[:, 0]
    for kind, cur in curves.items():
        col = st.SCHEDULE_COLORS[kind]
        k = cur["inflection_step"]
        wide = kind == "constant"  # drawn wide and underneath: WSD follows it until its decay
        ax.plot(steps, cur["expected_perturbed_loss"], color=col, lw=3.0 if wide else 1.5,
                zorder=1 if wide else 2, label=f"{kind}: turn at step {k}, rise {cur['rise']:.3g}")
        ax.plot(k, cur["expected_perturbed_loss"][k], "o", color=col, ms=7, mec="white", mew=1.0, zorder=5)
        st.mark_vertical(ax, k, col, ls="--", lw=0.8, alpha=0.7)
        axr.plot(steps, cur["learning_rate"], color=col, label=kind)
    ax.plot([], [], "o", color="0.3", mec="white", ms=7, label="inflection step (exact argmin)")
    lo = min(cur["expected_perturbed_loss"].min() for cur in curves.values())
    hi = max(cur["expected_perturbed_loss"].max() for cur in curves.values())
    ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_ylabel(st.PERTURBED_LOSS)
    ax.set_title(f"Annealing shrinks the rise but keeps the turn\n(σ = {c.sigma:g}, s* = {s_star:.3g}, "
                 f"peak η = {c.lr:g}, WSD decays over the last {c.decay_fraction:.0%} of the run)")
    ax.legend(loc="upper right")
    ax.tick_params(labelbottom=True)
    axr.set_ylabel(r"rate $\eta_k$ per step")
    axr.set_ylim(0, 1.15 * c.lr)
    st.steps_axis(axr, None, label=st.PRETRAIN_STEPS, log=False)
    axr.legend(loc="lower left", ncols=3)

    data = dict(
        description="expected perturbed loss under constant, cosine and WSD schedules with their inflection steps",
        config=config_dict(c),
        units={"steps": "GD steps", "loss": "½‖·‖²_F; E over Gaussian weight noise of std σ per entry",
               "learning_rate": "η_k = lr × schedule(k) per GD step"},
        singular_values=teacher.s,
        critical_singular_value=s_star,
        steps=steps,
        schedules={kind: {**cur, "mode_learning_steps": turns[kind]["mode_learning_steps"],
                          "schedule": str(turns[kind]["schedule"])} for kind, cur in curves.items()},
        predictions={f"{kind}: inflection step, rise": f"{cur['inflection_step']}, {cur['rise']:.3g}"
                     for kind, cur in curves.items()},
    )
    return fig, data
