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

from .output import RunFailure, atomic_write_json, envelope, format_table, jsonable, non_finite  # noqa: F401

# Modules that add subcommands: each has add_commands(subparsers). Missing optional
# parts of the project (figures/, experiments/) are skipped.
COMMAND_MODULES = (
    "linear_theory._cli_simulate",
    "linear_theory._cli_predict",
    "linear_theory._cli_optim",
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


def _items(text):
    """The comma-separated entries of `text`; an empty entry ("2,,1", "2,1,") is an error."""
    items = [x.strip() for x in text.split(",")]
    if not any(items):
        raise ValueError("empty list")
    if not all(items):
        raise ValueError(f"empty entry in {text!r}")
    return items


def _float_list(text):
    return [float(x) for x in _items(text)]


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


def _weight_decay(text):
    """λ (both matrices) or λ1,λ2 (W1, W2), each finite and ≥ 0: a float when the two are equal,
    else a pair; "noise-optimal" is kept as text for the commands that resolve it."""
    if text.strip().lower() == "noise-optimal":
        return "noise-optimal"
    values = [_nonneg(x) for x in _items(text)]
    if len(values) > 2:
        raise ValueError("give λ or λ1,λ2")
    return values[0] if len(values) == 1 or values[0] == values[1] else tuple(values)


def _step_list(text):
    steps = []
    for x in _items(text):
        steps.append(math.inf if x.lower() == "inf" else _int_ge(0)(x))
    for a, b in zip(steps, steps[1:]):
        if not b > a:
            raise ValueError(f"steps must be strictly increasing ({a:g} then {b:g})")
    return steps


float_list = _type(_float_list, "list of numbers")
finite = _type(_finite, "number")
nonneg = _type(_nonneg, "non-negative number")
positive = _type(_positive, "positive number")
step_list = _type(_step_list, "list of non-negative integer steps")
weight_decay = _type(_weight_decay, "weight decay")
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
                   help="co-diagonal input covariance Σx: variance d_i > 0 along each v_i, one per singular value "
                        "(default: whitened, all 1). The teacher's input-output correlation keeps singular values "
                        "s_i, so the loss ½E‖(W2W1 − A)x‖² is least at W2W1 = Σyx Σx⁻¹: mode i converges to "
                        "s_i/d_i, not s_i (a high-variance direction needs a smaller weight for the same output), "
                        "and it is learned at rate ∝ s_i (flow time ≈ ln(s_i/(d_i a0))/(2 s_i))")
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
    g.add_argument("--weight-decay", type=weight_decay, default=0.0, metavar="L|L1,L2",
                   help="weight decay: λ of (λ/2)‖W‖² on both layers, or λ1,λ2 for (λ1/2)‖W1‖² + (λ2/2)‖W2‖² "
                        "(loss units per squared weight unit; default 0). predict and simulate (with --sigma, absolute "
                        "noise) also take 'noise-optimal': (σ2²d_out, σ1²d_in), the decay that equals the weight "
                        "noise in expectation")


def add_output_args(p):
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of a table")
    g.add_argument("--out", metavar="FILE", help="also write the JSON object to FILE (atomically)")
    add_cache_arg(g)


def add_cache_arg(p):
    p.add_argument("--compile-cache", metavar="DIR|off",
                   help="folder of JAX's persistent compilation cache, reused by the next run, or 'off' "
                        "(default: $LINEAR_THEORY_COMPILE_CACHE, else ~/.cache/linear-theory/jax)")


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
    teacher = make_teacher(s, args.d_in, args.d_out, seed=args.seed, input_variances=d)
    _warn_width(teacher, args.d_hidden)
    return teacher


def _warn_width(teacher, h):
    """A hidden width below the teacher's rank leaves modes that can never be learned: say which."""
    r = teacher.rank
    if h >= r:
        return
    from ._fixed_point import kept_modes

    # aligned init places, and GD from any init keeps, the best rank-h modes in the input metric
    kept = np.zeros(r, dtype=bool)
    kept[kept_modes(teacher, h)] = True
    lost = np.flatnonzero(~kept).tolist()
    why = "a width-h network keeps the h modes with the largest s_i/√d_i"
    names = ", ".join(f"{i} (s={teacher.s[i]:g})" for i in lost)
    sys.stderr.write(f"linear-theory: warning: --d-hidden {h} is below the teacher's rank {r}: modes {names} "
                     f"(0-based) can never be learned ({why})\n")


def weight_decay_from_args(args, teacher):
    """--weight-decay as λ or (λ1, λ2); 'noise-optimal' resolved from --sigma/--sigma2
    (absolute noise, whitened inputs): (σ2²d_out, σ1²d_in), `noise_optimal_weight_decay`."""
    wd = args.weight_decay
    if wd != "noise-optimal":
        return wd
    if getattr(args, "sigma", None) is None or getattr(args, "noise", "absolute") != "absolute":
        raise ValueError("--weight-decay noise-optimal needs --sigma (absolute noise)")
    from ._weight_decay import noise_optimal_weight_decay

    l1, l2 = noise_optimal_weight_decay(teacher, args.sigma, args.sigma2)
    return l1 if l1 == l2 else (l1, l2)


def schedule_from_args(args, total_steps):
    from ._schedules import Schedule

    if args.schedule == "constant":
        return Schedule()
    return Schedule(args.schedule, total_steps=max(int(total_steps), 1), warmup_steps=args.warmup_steps,
                    decay_fraction=args.decay_fraction)


# ---------------------------------------------------------------- output


# Keys whose values may be inf (a step that never comes, the fixed point) without that being a failure.
INF_OK = ("steps", "times", "mode_learning_steps", "learning_steps", "predicted_step")
# Names of argparse attributes that are not part of a run's configuration.
_NOT_CONFIG = ("run", "json", "out", "command")


def run_config(args) -> dict:
    """The full configuration of a run: every option as parsed (defaults included)."""
    cfg = {"command": getattr(args, "command", None)}
    cfg.update({k: v for k, v in sorted(vars(args).items()) if k not in _NOT_CONFIG and not callable(v)})
    return cfg


def emit(args, payload: dict, table: str, config: dict | None = None, check_finite: bool = True):
    """Print the result (JSON or table) and write --out if asked.

    The JSON is the project's envelope (`output.envelope`: schema, version, configuration).
    A NaN (or an inf outside step-valued keys) in the payload is a failure: nothing is
    printed or written and the command exits 1 naming the value."""
    if check_finite:
        bad = non_finite(payload, INF_OK)
        if bad is not None:
            raise RunFailure(f"the result holds a non-finite number ({bad}); nothing written — the run diverged "
                             "or overflowed: try a smaller --lr, --init-std or --sigma")
    if "schema" not in payload:  # a payload that is already an envelope (a transformer run) stays as it is
        payload = envelope(args.command, run_config(args) if config is None else config, payload)
    payload = jsonable(payload)
    text = json.dumps(payload)
    if getattr(args, "out", None):
        atomic_write_json(args.out, payload)
    if args.json:
        sys.stdout.write(text + "\n")
    else:
        sys.stdout.write(table.rstrip("\n") + "\n")


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
    from ._compile_cache import enable_compilation_cache

    enable_compilation_cache(getattr(args, "compile_cache", None))
    try:
        args.run(args)
    except ValueError as e:  # bad input found while validating or running
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 2
    except RunFailure as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001 — the CLI reports, never dumps a traceback
        sys.stderr.write(f"{prog}: failed: {type(e).__name__}: {e}\n")
        return 1
    return 0


def entry() -> None:
    """The console script: main(), then a quick end of the process.

    Python's finalisation of a process that used JAX tears its runtime down object by
    object (≈0.25 s on 2 CPU cores, more than a small command's work). Every file is closed
    and written atomically by the time main() returns, so the last exit handler (registered
    first, hence run after JAX's and logging's own handlers) flushes the standard streams
    and ends the process with main()'s exit status, skipping only that teardown.
    """
    import atexit
    import os

    status = [1]

    def end_now():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed, or a broken pipe
                pass
        os._exit(status[0])

    atexit.register(end_now)
    try:
        status[0] = main()
    except SystemExit as e:  # argparse: --help (0), bad usage (2)
        status[0] = e.code if isinstance(e.code, int) else int(e.code is not None)
        raise
    sys.exit(status[0])


if __name__ == "__main__":
    entry()
