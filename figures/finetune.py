"""Figure 6, fine-tuning as a perturbation (THEORY.md §5).

Pre-train on A (full-matrix GD, aligned init); from each checkpoint T run K GD steps at a
fixed rate η_ft on B = A + (rank-k change), optionally with ½λ‖W − W(T)‖² per layer. Left:
the pre-training loss L_A after fine-tuning (U-shaped in T for a large η_ft); right: the
fine-tuning loss L_B after fine-tuning (what the smaller rate or λ costs).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from linear_theory import Schedule, finetune_grid, finetune_target, log_steps

from . import _style as st
from ._output import config_dict
from ._setup import Problem, build_teacher


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(Problem):
    """Pre-training run, fine-tuning target B = A + change_size · (rank-k change), K, rates, λ."""

    init_strength: float = 1e-6  # a0 of the aligned balanced init
    spectrum: str = "power:16:1:1"
    lr: float = 0.2
    max_steps: int = 10000
    n_checkpoints: int = 40
    change_size: float = 1.0
    change_rank: int = 4
    change_seed: int = 1
    finetune_steps: int = 50
    finetune_lrs: tuple = (0.01, 0.02, 0.05, 0.1)
    finetune_l2s: tuple = (0.0, 1.0)
    seed: int = 0

    @classmethod
    def small(cls):
        return cls(spectrum="1,0.5,0.2,0.1", d_in=6, d_hidden=4, d_out=5, max_steps=600, n_checkpoints=12,
                   change_rank=2, finetune_steps=20, finetune_lrs=(0.02, 0.1), finetune_l2s=(0.0, 1.0))


# A turn is marked only when L_A rises after it by at least this fraction of its minimum: the runs are
# exact GD (no sampling noise), so the question is whether the rise can be seen at all; a rise of 7e-5
# on a loss of 0.8 is a flat tail, not a U.
MIN_RELATIVE_RISE = 0.01


def pretrain_checkpoints(max_steps: int, n: int) -> np.ndarray:
    """About n log-spaced integer steps in 1 … max_steps."""
    return log_steps(max_steps, n)[1:]


@st.styled
def make_finetune(config: FinetuneConfig = FinetuneConfig()):
    c = config
    teacher = build_teacher(c.spectrum, c.d_in, c.d_out, c.teacher_seed)
    B = finetune_target(teacher, "rank", c.change_size, c.change_rank, c.change_seed)
    T = pretrain_checkpoints(c.max_steps, c.n_checkpoints)
    # one pre-training; every (η_ft, λ) fine-tuning of every checkpoint in one compiled call
    grid = finetune_grid(teacher, B, c.d_hidden, c.lr, T, c.finetune_lrs, [c.finetune_steps], c.finetune_l2s,
                         {"constant": Schedule()}, "aligned", c.init_strength, None, c.seed)
    by_pair = {(row[1], row[3]): r for row, r in zip(grid.rows, grid.sweeps)}
    runs = []
    for lam in c.finetune_l2s:
        for eta in c.finetune_lrs:
            r = by_pair[(float(eta), float(lam))]
            runs.append(dict(finetune_lr=eta, finetune_l2=lam, pretrain_loss_after=r.pretrain_loss_after,
                             finetune_loss_after=r.finetune_loss_after, turning_step=r.turning_step,
                             turning_is_interior=r.turning_is_interior,
                             rise=float(r.pretrain_loss_after[-1] - r.pretrain_loss_after.min()),
                             relative_rise=float(r.pretrain_loss_after[-1] / r.pretrain_loss_after.min() - 1),
                             pretrain_loss_before=r.pretrain_loss_before,
                             finetune_loss_before=r.finetune_loss_before))

    fig, axes = st.new_figure(1, 2, width=11.0, height=4.4, sharex=True)
    axa, axb = axes[0]
    colors = dict(zip(c.finetune_lrs, st.sequential_colors(len(c.finetune_lrs))))
    styles = dict(zip(c.finetune_l2s, ["-", "--", ":", "-."]))
    for run in runs:
        col, ls = colors[run["finetune_lr"]], styles[run["finetune_l2"]]
        axa.plot(T, run["pretrain_loss_after"], ls=ls, color=col, marker=".", ms=3)
        axb.plot(T, run["finetune_loss_after"], ls=ls, color=col, marker=".", ms=3)
        run["turn_marked"] = bool(run["turning_is_interior"] and run["relative_rise"] >= MIN_RELATIVE_RISE)
        if not run["turn_marked"]:
            continue
        k = int(np.searchsorted(T, run["turning_step"]))
        axa.plot(T[k], run["pretrain_loss_after"][k], "o", color=col, ms=7, mec="white", mew=1.0, zorder=5)
    axa.plot(T, runs[0]["pretrain_loss_before"], color="0.55", ls="-.", lw=1.1, label="before fine-tuning")
    axb.plot(T, runs[0]["finetune_loss_before"], color="0.55", ls="-.", lw=1.1, label="before fine-tuning")
    for eta, col in colors.items():
        axa.plot([], [], color=col, label=f"$\\eta_\\mathrm{{ft}}$ = {eta:g}")
    for lam, ls in styles.items():
        axa.plot([], [], ls=ls, color="0.3", label=f"λ = {lam:g}")
    axa.plot([], [], "o", color="0.3", mec="white", ms=7, label=f"turning step (argmin over T; rise ≥ {MIN_RELATIVE_RISE:.0%})")
    after = np.concatenate([r["pretrain_loss_after"] for r in runs])
    after = after[np.isfinite(after)]
    axa.set_ylim(0.4 * after.min(), 2.5 * after.max())  # L_A before fine-tuning falls to ~0, off the axis
    axa.legend(loc="lower left", ncols=2)
    axb.legend(loc="lower left")
    for ax in (axa, axb):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(st.PRETRAIN_STEPS + f",  η = {c.lr:g}")
    axa.set_ylabel(r"pre-training loss $L_A = \frac{1}{2}\|W_2W_1 - A\|_F^2$")
    axb.set_ylabel(r"fine-tuning loss $L_B = \frac{1}{2}\|W_2W_1 - B\|_F^2$")
    axa.set_title(f"After {c.finetune_steps} fine-tuning steps: the pre-training task (out of domain)")
    axb.set_title(f"… and the fine-tuning task (in domain); B = A + rank-{c.change_rank} change of size "
                  f"{c.change_size:g}")

    data = dict(
        description="L_A and L_B after K fine-tuning steps vs pre-training steps, for several rates and λ",
        config=config_dict(c),
        units={"steps": "GD steps", "loss": "½‖W2W1 − A‖²_F (L_A) and ½‖W2W1 − B‖²_F (L_B)",
               "finetune_lr": "per fine-tuning GD step", "finetune_l2": "λ of ½λ‖W − W(T)‖² per layer"},
        singular_values=teacher.s,
        pretrain_steps=T,
        runs=runs,
        predictions={
            f"η_ft = {r['finetune_lr']:g}, λ = {r['finetune_l2']:g}: turning step, rise of L_A":
                f"{r['turning_step']}, {r['rise']:.3g}" + ("" if r["turn_marked"] else " (no visible U)") for r in runs
        },
    )
    return fig, data
