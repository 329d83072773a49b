"""Shared output helpers: JSON-ready values, plain tables, atomic files, one JSON envelope.

The bottom layer of the project's output: `linear_theory.cli`, `figures` and `experiments`
all import from here (and nothing here imports them). Light: numpy only.

The JSON envelope (SCHEMA_VERSION 1), common to every JSON the project writes:

    schema          "linear-theory/<kind>", e.g. linear-theory/simulate, linear-theory/figure
    schema_version  integer, bumped when a key changes meaning or disappears
    version         the package version that wrote it
    config          the full configuration that reproduces the result on its own
    ...             the result's own keys (documented by its `units` entry where it has one)

Non-finite floats are written as null (JSON has no NaN).
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1


class RunFailure(RuntimeError):
    """A failure while running (the CLI exits 1) with a one-line message meant for the user."""


# ---------------------------------------------------------------- values


def jsonable(x):
    """numpy → Python, non-finite floats → None (JSON has no NaN), tuples → lists."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def non_finite(x, allow_inf=(), path="") -> str | None:
    """The path ("loss[3]") of the first NaN in `x`, or of the first ±inf outside keys named in
    `allow_inf` (e.g. steps, where inf means "never"); None when every number is finite."""
    if isinstance(x, dict):
        for k, v in x.items():
            if str(k) in allow_inf:
                hit = non_finite(v, (), f"{path}.{k}" if path else str(k))
                if hit is not None and not hit.endswith("=inf"):
                    return hit
                continue
            hit = non_finite(v, allow_inf, f"{path}.{k}" if path else str(k))
            if hit is not None:
                return hit
        return None
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "fc" and not np.all(np.isfinite(x)):
            i = int(np.flatnonzero(~np.isfinite(x.ravel()))[0])
            v = x.ravel()[i]
            return f"{path}[{i}]={'inf' if np.isinf(v) else 'nan'}"
        if x.dtype == object:
            return non_finite(x.tolist(), allow_inf, path)
        return None
    if isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            hit = non_finite(v, allow_inf, f"{path}[{i}]")
            if hit is not None:
                return hit
        return None
    if isinstance(x, (float, np.floating)) and not math.isfinite(float(x)):
        return f"{path}={'inf' if math.isinf(float(x)) else 'nan'}"
    return None


def envelope(kind: str, config: dict, payload: dict) -> dict:
    """The project's JSON envelope around `payload` (see the module docstring)."""
    from . import __version__

    out = {"schema": f"linear-theory/{kind}", "schema_version": SCHEMA_VERSION, "version": __version__,
           "config": config}
    out.update({k: v for k, v in payload.items() if k not in out})
    return out


# ---------------------------------------------------------------- tables


def format_table(headers, rows, max_width: int = 100) -> str:
    """A plain right-aligned table; None prints as "-", floats with 6 significant digits.

    Lines stay within `max_width` characters: a wider table is split into blocks of columns,
    each repeating the first column (the row label)."""

    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, str):
            return v
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        v = float(v)
        if math.isinf(v):
            return "inf"
        return f"{v:.6g}"

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    blocks, block, used = [], [], widths[0] if widths else 0
    for i in range(1, len(headers)):
        if block and used + 2 + widths[i] > max_width:
            blocks.append(block)
            block, used = [], widths[0]
        block.append(i)
        used += 2 + widths[i]
    blocks.append(block)
    out = []
    for cols in blocks:
        cols = [0] + cols if headers else cols
        lines = ["  ".join(headers[i].rjust(widths[i]) for i in cols)]
        lines.append("  ".join("-" * widths[i] for i in cols))
        lines += ["  ".join(c[i].rjust(widths[i]) for i in cols) for c in cells]
        out.append("\n".join(lines))
    return "\n\n".join(out)


def index_list(indices, empty: str = "none") -> str:
    """Mode indices for a table, runs of consecutive ones as ranges: [0, 1, 2, 5, 7, 8] →
    "0–2, 5, 7–8" (a tail of 2000 harmful modes stays one short cell); `empty` when none."""
    idx = sorted(int(i) for i in indices)
    parts, i = [], 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        parts.append(str(idx[i]) if j == i else f"{idx[i]}–{idx[j]}")
        i = j + 1
    return ", ".join(parts) or empty


def wrap(text: str, width: int = 100, indent: str = "") -> str:
    """Wrap a paragraph to `width` characters (tables' explanatory notes)."""
    import textwrap

    return "\n".join(textwrap.fill(p, width, subsequent_indent=indent) if p else "" for p in text.split("\n"))


# ---------------------------------------------------------------- progress


def progress(total, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm bar on stderr (None when disabled): progress never goes to stdout."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


# ---------------------------------------------------------------- atomic files


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def atomic_savefig(fig, path, **kwargs) -> Path:
    """Save a matplotlib figure atomically; the format follows the suffix of `path`."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip("."), **kwargs)
    return atomic_write_bytes(path, buf.getvalue())
