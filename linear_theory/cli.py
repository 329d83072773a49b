"""The `linear-theory` command line: one console script, one subcommand per job.

Exit codes: 0 success; 2 bad usage or bad input (one line on stderr, no traceback);
1 a failure while running. With --json, stdout holds exactly one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys

import numpy as np

from ._io import atomic_write_json

# Modules that add subcommands: each has add_commands(subparsers). Missing optional
# parts of the project (figures/, experiments/) are skipped.
COMMAND_MODULES = (
    "linear_theory._cli_simulate",
    "linear_theory._cli_predict",
    "figures.cli",
    "experiments.cli",
)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# ---------------------------------------------------------------- argument types


def _type(fn, what):
    def parse(text):
        try:
            return fn(text)
        except (ValueError, TypeError) as e:
            raise argparse.ArgumentTypeError(f"{what}: {e}" if str(e) else f"invalid {what}: {text!r}") from None

    parse.__name__ = what
    return parse


def _float_list(text):
    items = [x for x in text.split(",") if x.strip()]
    if not items:
        raise ValueError("empty list")
    return [float(x) for x in items]


def _finite(x):
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{x!r} is not a finite number")
    return v


def _nonneg(x):
    v = _finite(x)
    if v < 0:
        raise ValueError(f"{x!r} is negative")
    return v


def _positive(x):
    v = _finite(x)
    if v <= 0:
        raise ValueError(f"{x!r} is not positive")
    return v


def _int_ge(lo):
    def parse(x):
        try:
            v = float(x)
        except ValueError:
            raise ValueError(f"{x!r} is not an integer") from None
        if not math.isfinite(v) or v != int(v):
            raise ValueError(f"{x!r} is not an integer")
        if v < lo:
            raise ValueError(f"{x!r} is below {lo}")
        return int(v)

    return parse


def _step_list(text):
    steps = []
    for x in text.split(","):
        x = x.strip()
        if not x:
            continue
        if x.lower() == "inf":
            steps.append(math.inf)
            continue
        steps.append(_int_ge(0)(x))
    if not steps:
        raise ValueError("empty list")
    return steps


float_list = _type(_float_list, "list of numbers")
finite = _type(_finite, "number")
nonneg = _type(_nonneg, "non-negative number")
positive = _type(_positive, "positive number")
step_list = _type(_step_list, "list of non-negative integer steps")
pos_int = _type(_int_ge(1), "positive integer")
nonneg_int = _type(_int_ge(0), "non-negative integer")


# ---------------------------------------------------------------- shared options


def add_teacher_args(p):
    g = p.add_argument_group("teacher and network")
    g.add_argument("--d-in", type=pos_int, default=24, help="input dimension (default 24)")
    g.add_argument("--d-hidden", type=pos_int, default=20, help="hidden width h (default 20)")
    g.add_argument("--d-out", type=pos_int, default=16, help="output dimension (default 16)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--singular-values", type=float_list, metavar="S1,S2,...",
                     help="teacher singular values, comma-separated (default 2,1.5,1,0.5)")
    src.add_argument("--spectrum", metavar="NAME:ARGS",
                     help="named spectrum: power:RANK[:S1[:ALPHA]], geometric:RANK[:S1[:RATIO]], "
                          "hierarchical:DEPTH[:SCALE]")
    g.add_argument("--input-variances", type=float_list, metavar="D1,D2,...",
                   help="co-diagonal input covariance: variance along each v_i (default: whitened)")
    g.add_argument("--seed", type=nonneg_int, default=0, help="seed for U, V and the init (default 0)")


def add_init_args(p, with_random=True, with_lambda=False):
    g = p.add_argument_group("initialisation")
    if with_random:
        inits = ("aligned", "random") + (("lambda-balanced",) if with_lambda else ())
        g.add_argument("--init", choices=inits, default="aligned",
                       help="aligned balanced init (THEORY §2) or i.i.d. Gaussian entries (default aligned)"
                       + ("; lambda-balanced: aligned modes at --init-strength with W2ᵀW2 − W1W1ᵀ = λI"
                          if with_lambda else ""))
        g.add_argument("--init-std", type=positive, help="std of each entry for --init random")
    if with_lambda:
        g.add_argument("--lambda", dest="lam", type=finite, default=0.0, metavar="L",
                       help="λ of W2ᵀW2 − W1W1ᵀ = λI (squared weight units; 0: balanced, rich; |λ| large: lazy). "
                            "λ > 0 needs d_hidden ≤ d_out, λ < 0 needs d_hidden ≤ d_in (default 0)")
    g.add_argument("--init-strength", type=positive, default=1e-6,
                   help="initial mode strength a0 for aligned init (default 1e-6)")


def add_schedule_args(p):
    g = p.add_argument_group("learning rate")
    g.add_argument("--lr", type=positive, default=0.05,
                   help="peak learning rate per GD step; flow time = lr × steps (default 0.05)")
    g.add_argument("--schedule", choices=("constant", "cosine", "wsd"), default="constant",
                   help="learning-rate schedule over the run (default constant)")
    g.add_argument("--warmup-steps", type=nonneg_int, default=0, help="linear warmup steps (cosine, wsd)")
    g.add_argument("--decay-fraction", type=nonneg, default=0.2,
                   help="fraction of the run spent decaying (wsd, default 0.2)")
    g.add_argument("--weight-decay", type=nonneg, default=0.0, help="coefficient of ½‖W‖² per layer (default 0)")


def add_output_args(p):
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of a table")
    g.add_argument("--out", metavar="FILE", help="also write the JSON object to FILE (atomically)")


def teacher_from_args(args):
    from ._teacher import make_teacher, parse_spectrum

    if args.spectrum is not None:
        s = parse_spectrum(args.spectrum)
    elif args.singular_values is not None:
        s = args.singular_values
    else:
        s = [2.0, 1.5, 1.0, 0.5]
    d = args.input_variances
    if d is not None and len(d) != len(s):
        raise ValueError(f"--input-variances needs {len(s)} values, one per singular value")
    return make_teacher(s, args.d_in, args.d_out, seed=args.seed, input_variances=d)


def schedule_from_args(args, total_steps):
    from ._schedules import Schedule

    if args.schedule == "constant":
        return Schedule()
    return Schedule(args.schedule, total_steps=max(int(total_steps), 1), warmup_steps=args.warmup_steps,
                    decay_fraction=args.decay_fraction)


# ---------------------------------------------------------------- output


def jsonable(x):
    """numpy → Python, non-finite floats → None (JSON has no NaN), inf steps → "inf"."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def emit(args, payload: dict, table: str):
    """Print the result (JSON or table) and write --out if asked."""
    payload = jsonable(payload)
    if getattr(args, "out", None):
        atomic_write_json(args.out, payload)
    if args.json:
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        sys.stdout.write(table.rstrip("\n") + "\n")


def format_table(headers, rows) -> str:
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
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="linear-theory",
        description="Progressive sensitivity in two-layer linear networks: dynamics, noise, fine-tuning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name.split(".")[0]) and e.name in name:
                continue  # that part of the project is not there
            raise
        module.add_commands(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"linear-theory {args.command}"
    try:
        args.run(args)
    except ValueError as e:  # bad input found while validating or running
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001 — the CLI reports, never dumps a traceback
        sys.stderr.write(f"{prog}: failed: {type(e).__name__}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
