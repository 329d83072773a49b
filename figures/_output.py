"""Writing a figure: PNG, PDF and the plotted data (JSON) side by side, each atomically."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib as mpl

from linear_theory.output import atomic_savefig, atomic_write_json, envelope, jsonable

from ._style import RC

FORMATS = ("png", "pdf")


def config_dict(config) -> dict:
    """A figure config as plain JSON-ready values."""
    return jsonable(dataclasses.asdict(config))


def save_figure(fig, data: dict, out_dir, name: str, formats=FORMATS) -> list[Path]:
    """Write DIR/name.EXT for each of `formats` (image formats of FORMATS), then DIR/name.json;
    return the paths in that order.

    The JSON is the project's envelope (schema linear-theory/figure, version, the figure's
    config) around `data`, with numpy arrays as lists and NaN/inf as null.
    """
    out_dir = Path(out_dir)
    for ext in FORMATS + ("json",):  # temporary files a killed earlier run left behind
        for stale in out_dir.glob(f".{name}.{ext}.*.tmp"):
            stale.unlink(missing_ok=True)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown figure format(s) {unknown}; choose from {', '.join(FORMATS)}")
    paths = []
    with mpl.rc_context(RC):
        for ext in formats:
            kw = {"metadata": {"CreationDate": None}} if ext == "pdf" else {}
            paths.append(atomic_savefig(fig, out_dir / f"{name}.{ext}", **kw))
    paths.append(atomic_write_json(out_dir / f"{name}.json", jsonable(envelope("figure", data.get("config", {}), {"figure": name, **data}))))
    return paths
