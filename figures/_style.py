"""The one look shared by every figure: fonts, colours, axis labels with units.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot, no global state),
so they render with the Agg canvas whatever the session's backend; `styled` wraps a
figure maker in the shared rcParams. Colours:

- modes: a fixed logarithmic colour map over the teacher singular value s_i, the same
  value giving the same colour in every figure (`mode_color`, `mode_colorbar`);
- noise scales σ and fine-tuning rates: a sequential map (`sequential_colors`);
- schedules: fixed categorical colours (`SCHEDULE_COLORS`).

Time axes are logarithmic in GD steps where time spans decades (`steps_axis`), with the
gradient-flow time t = lr × steps on a top axis when the rate is constant.
"""

from __future__ import annotations

import functools
import math

import matplotlib as mpl
import numpy as np
from matplotlib.colors import LinearSegmentedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "figure.dpi": 100,
    "savefig.dpi": 160,
    "pdf.fonttype": 42,
    "mathtext.fontset": "dejavusans",
}

WIDTH = 6.4  # inches, one figure across a page

# ------------------------------------------------------------------ labels (with units)

STEPS = "GD steps"
PRETRAIN_STEPS = "pre-training steps T (GD steps)"
FLOW_TIME = r"flow time $t = \eta \times$ steps"
LOSS = r"loss $\frac{1}{2}\|W_2W_1 - A\|_F^2$"
PERTURBED_LOSS = r"$\mathbb{E}_Z[L_\mathrm{pert}]$  (loss units, $\frac{1}{2}\|\cdot\|_F^2$)"
SENSITIVITY = r"$\mathbb{E}_Z[L_\mathrm{pert}] - L$  (loss units)"
MODE_STRENGTH = r"mode strength $a_i = u_i^\top W_2 W_1 v_i$"
SIGMA = r"noise std $\sigma$ per weight entry"
CRITICAL = r"critical singular value $s^* = \sigma^2 (d_\mathrm{in} + d_\mathrm{out})$"
SINGULAR_VALUE = r"teacher singular value $s_i$"
HESSIAN_TRACE = r"sharpness $\mathrm{tr}\,H = d_\mathrm{in}\|W_2\|^2 + d_\mathrm{out}\|W_1\|^2$"

# ------------------------------------------------------------------ colours


def _truncate(name: str, lo: float, hi: float) -> LinearSegmentedColormap:
    base = mpl.colormaps[name]
    return LinearSegmentedColormap.from_list(f"{name}_{lo}_{hi}", base(np.linspace(lo, hi, 256)))


MODE_CMAP = _truncate("viridis", 0.0, 0.88)  # no pale yellow on white
MODE_NORM = LogNorm(vmin=0.05, vmax=2.0)  # fixed: s_i has one colour in every figure
SEQUENTIAL_CMAP = _truncate("inferno", 0.12, 0.78)
HEAT_CMAP = "magma"
SCHEDULE_COLORS = {"constant": "#8a8a8a", "cosine": "#1f77b4", "wsd": "#d95f02"}
THEORY_COLOR = "#222222"
MC_COLOR = "#c0392b"


def mode_color(s):
    """RGBA colour of a mode with teacher singular value s (clipped to the fixed range)."""
    return MODE_CMAP(MODE_NORM(np.clip(s, MODE_NORM.vmin, MODE_NORM.vmax)))


def mode_colorbar(fig: Figure, ax, singular_values=None, **kwargs):
    """A colour bar for `mode_color`, limited to the range of `singular_values` if given
    (with a tick at each of them when there are few)."""
    norm, cmap = MODE_NORM, MODE_CMAP
    s = None if singular_values is None else np.unique(np.asarray(singular_values, dtype=float))
    if s is not None:
        lo, hi = max(s.min(), MODE_NORM.vmin), min(s.max(), MODE_NORM.vmax)
        if hi > lo:
            cmap = LinearSegmentedColormap.from_list("modes_sub", MODE_CMAP(np.linspace(MODE_NORM(lo), MODE_NORM(hi), 256)))
            norm = LogNorm(lo, hi)
    cb = fig.colorbar(mpl.cm.ScalarMappable(norm, cmap), ax=ax, **kwargs)
    cb.set_label(SINGULAR_VALUE)
    if s is not None and s.size <= 8:
        cb.set_ticks(s[(s >= norm.vmin) & (s <= norm.vmax)], labels=[f"{x:g}" for x in s[(s >= norm.vmin) & (s <= norm.vmax)]])
        cb.ax.minorticks_off()
    return cb


def sequential_colors(n: int):
    """n colours, dark to light, for an ordered parameter (σ, fine-tuning rate)."""
    return [SEQUENTIAL_CMAP(x) for x in (np.linspace(0.0, 1.0, n) if n > 1 else [0.4])]


# ------------------------------------------------------------------ figures and axes


class PlainLogFormatter(LogFormatterSciNotation):
    """Log-axis labels as plain numbers (1, 10, 0.01, 2000) between 10⁻³ and 10⁴, powers of
    ten outside. Which ticks get a label is decided as by matplotlib's default; plain text
    also renders much faster than mathtext."""

    def __call__(self, x, pos=None):
        if not super().__call__(x, pos):
            return ""
        e = math.floor(math.log10(abs(x)) + 1e-9) if x else 0
        if -3 <= e <= 4:
            return f"{x:g}"
        m = x / 10.0**e
        return f"$10^{{{e}}}$" if abs(m - round(m)) < 1e-6 and round(m) == 1 else f"${m:.2g}\\times 10^{{{e}}}$"


def plain_log_labels(fig: Figure) -> Figure:
    """Swap matplotlib's default log-axis formatters for `PlainLogFormatter` everywhere."""
    axes = list(fig.axes)
    axes += [child for ax in fig.axes for child in ax.child_axes]
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            for get, set_ in ((axis.get_major_formatter, axis.set_major_formatter),
                              (axis.get_minor_formatter, axis.set_minor_formatter)):
                fmt = get()
                if type(fmt) is LogFormatterSciNotation:
                    set_(PlainLogFormatter(10.0, labelOnlyBase=fmt.labelOnlyBase))
    return fig


def styled(fn):
    """Run a figure maker inside the shared rcParams; plain labels on its log axes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(RC):
            fig, data = fn(*args, **kwargs)
            return plain_log_labels(fig), data

    return wrapper


def new_figure(nrows=1, ncols=1, width=WIDTH, height=4.0, **subplot_kw):
    """A constrained-layout Figure (Agg canvas, no pyplot) and its axes array."""
    with mpl.rc_context(RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def steps_axis(ax, lr: float | None = None, label: str = STEPS, log: bool = True):
    """Label the x axis in GD steps (log scale by default); with a constant rate, add the
    flow time lr × steps on top."""
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    if lr is not None:
        top = ax.secondary_xaxis("top", functions=(lambda x: x * lr, lambda t: t / lr))
        top.set_xlabel(FLOW_TIME + f"  ($\\eta$ = {lr:g})")
        return top
    return None


def positive(steps, *arrays):
    """Drop step 0 (and the matching entries of `arrays`) for a log axis."""
    steps = np.asarray(steps)
    keep = steps > 0
    return (steps[keep],) + tuple(np.asarray(a)[..., keep] for a in arrays)


def mark_vertical(ax, x, color, label=None, ls=":", lw=1.0, alpha=0.9):
    """A thin vertical marker line (a learning step, an inflection)."""
    return ax.axvline(x, color=color, ls=ls, lw=lw, alpha=alpha, label=label, zorder=1)


def panel_label(ax, text: str):
    """A bold (a), (b), … in the top-left corner of a panel."""
    ax.text(-0.02, 1.02, text, transform=ax.transAxes, ha="right", va="bottom", fontweight="bold")
