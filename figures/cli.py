"""`linear-theory figures`: make the theory figures, save them, report what was written.

The CLI only chooses, saves and reports; each figure is a function of a small config
(see `figures.registry`). Files: DIR/NAME.png, DIR/NAME.pdf and DIR/NAME.json (the plotted
data, config and units), each written atomically. A progress bar goes to stderr when more
than one figure is made; with --json, stdout holds exactly one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from linear_theory.cli import add_cache_arg
from linear_theory.output import envelope, jsonable, wrap

from .registry import FIGURES, select

DEFAULT_OUT = "figures/out"


def add_commands(sub):
    p = sub.add_parser(
        "figures",
        help="make the theory figures (PNG, PDF and the plotted data as JSON) and print the predictions",
        description="Make the theory figures: " + "; ".join(f"{n}: {s.description}" for n, s in FIGURES.items())
        + ". Units (THEORY.md): time in GD steps, flow time = lr × steps; losses ½‖W2W1 − A‖²_F (whitened "
        "inputs); noise std σ per weight entry on both layers. With no NAME, all figures are made.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help=f"figures to make (default all: {', '.join(FIGURES)})")
    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                   help=f"folder for NAME.png, NAME.pdf, NAME.json (default {DEFAULT_OUT})")
    p.add_argument("--list", action="store_true", help="list the figure names with one line each, make nothing")
    p.add_argument("--small", action="store_true",
                   help="a quick preview: the small test configs, written as PNG only unless --formats is given "
                        "(saving is most of a figure's time)")
    p.add_argument("--formats", type=_formats, metavar="F1,F2",
                   help="image formats to write beside NAME.json, from png,pdf (default png,pdf; png with --small)")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of tables")
    add_cache_arg(p)
    p.set_defaults(run=run)


def run(args):
    specs = select(args.names)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out!r} exists and is not a folder")
    if args.list:
        rows = [[s.name, s.description] for s in specs]
        payload = {"figures": [{"name": s.name, "description": s.description} for s in specs]}
        _emit(args, payload, _left_table(["figure", "description"], rows))
        return

    import matplotlib
    from tqdm import tqdm

    matplotlib.use("Agg")
    from ._output import FORMATS, save_figure

    formats = args.formats or (("png",) if args.small else FORMATS)
    start = time.perf_counter()
    made = []
    bar = tqdm(specs, desc="figures", unit="figure", file=sys.stderr, disable=len(specs) <= 1, leave=False)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        t0 = time.perf_counter()
        fig, data = spec.build(small=args.small)
        paths = save_figure(fig, data, args.out, spec.name, formats)
        made.append(dict(name=spec.name, description=spec.description, files=[str(p) for p in paths],
                         seconds=round(time.perf_counter() - t0, 2), predictions=data.get("predictions", {})))
    bar.close()
    wall = time.perf_counter() - start

    payload = dict(out_dir=str(args.out), small=args.small, wall_time_s=round(wall, 2),
                   files=[f for m in made for f in m["files"]], figures=made)
    files = _left_table(["figure", "seconds", "files"], [[m["name"], f"{m['seconds']:.1f}", "  ".join(m["files"])]
                                                         for m in made])
    width = max([len("figure")] + [len(m["name"]) for m in made]) + 2
    preds = "\n".join([f"{'figure':<{width}}prediction: value", "-" * 40] + [
        wrap(f"{m['name']:<{width}}{k}: {v}", 100, " " * width) for m in made for k, v in m["predictions"].items()])
    table = (f"{preds}\n\n{files}\n\n"
             f"wrote {len(payload['files'])} files to {args.out} in {wall:.1f} s")
    _emit(args, payload, table)


def _emit(args, payload: dict, table: str):
    """One JSON object or the tables on stdout (the figures' --out is a folder, so this
    does not use `cli.emit`, whose --out is a JSON file)."""
    if args.json:
        config = {"command": "figures", "names": list(args.names), "out": str(args.out), "small": args.small,
                  "formats": list(args.formats) if args.formats else None}
        sys.stdout.write(json.dumps(jsonable(envelope("figures", config, payload))) + "\n")
    else:
        sys.stdout.write(table.rstrip("\n") + "\n")


def _formats(text: str) -> tuple[str, ...]:
    """--formats: a comma-separated list of png and pdf, each once."""
    parts = [p.strip().lower() for p in text.split(",")]
    if not parts or any(p not in ("png", "pdf") for p in parts) or len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"expected png, pdf or png,pdf, got {text!r}")
    return tuple(parts)


def _left_table(headers, rows) -> str:
    """A plain table with left-aligned text columns."""
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
