"""Noise options of `simulate`: exact and Monte Carlo perturbed loss at each checkpoint."""

from __future__ import annotations

import numpy as np

from . import cli

NOISE_CHOICES = {"absolute": "absolute", "relative-init": "init", "relative-rms": "rms"}


def add_noise_args(p):
    g = p.add_argument_group("Gaussian weight noise (THEORY.md §4)")
    g.add_argument("--sigma", type=cli.nonneg,
                   help="noise scale: std of each added N(0, σ²) entry of W1 (and W2) for --noise absolute, "
                        "or the factor γ for the relative kinds")
    g.add_argument("--sigma2", type=cli.nonneg, help="a different scale for W2 (default: --sigma)")
    g.add_argument("--noise", choices=tuple(NOISE_CHOICES), default="absolute",
                   help="absolute (default): std = σ; relative-init: std = σ × the layer's init RMS; "
                        "relative-rms: std = σ × the layer's current RMS (grows with training)")
    g.add_argument("--mc-samples", type=cli.nonneg_int, default=256,
                   help="Monte Carlo noise draws per checkpoint, same draws at every checkpoint (default 256; "
                        "0: none); drawn in chunks of ≤ 1024 with memory independent of the count, a progress "
                        "bar on stderr from 8192 draws")


def checkpoint_weights(args, teacher, traj):
    """W1, W2 at every checkpoint: recorded by full GD, or rebuilt from the strengths of an
    aligned balanced trajectory (exact: such weights stay aligned and balanced)."""
    from ._spectral import aligned_weights

    if traj.W1 is not None:
        return traj.W1, traj.W2
    if args.init != "aligned":  # random, lambda-balanced: recorded or rebuilt by the solver
        raise ValueError("--sigma with --init random needs finite checkpoints")
    return aligned_weights(teacher, traj.mode_strengths, args.d_hidden, args.seed)


def layer_stds(args, W1, W2):
    from ._noise import noise_stds

    kind = NOISE_CHOICES[args.noise]
    if kind == "absolute":
        s1 = args.sigma
        s2 = args.sigma if args.sigma2 is None else args.sigma2
        return s1, s2
    if kind == "init":
        # The actual RMS of each layer at step 0 (for --init random it differs from the
        # nominal --init-std by sampling error ~ 1/√(entries)).
        n1, n2 = np.sum(W1[0] ** 2), np.sum(W2[0] ** 2)
        stds = (np.sqrt(n1 / W1[0].size), np.sqrt(n2 / W2[0].size))
        s1, _ = noise_stds(args.sigma, "init", init_stds=stds)
        _, s2 = noise_stds(args.sigma if args.sigma2 is None else args.sigma2, "init", init_stds=stds)
        return s1, s2
    s1, _ = noise_stds(args.sigma, "rms", W1=W1, W2=W2)
    _, s2 = noise_stds(args.sigma if args.sigma2 is None else args.sigma2, "rms", W1=W1, W2=W2)
    return s1, s2


def noise_columns(args, teacher, traj) -> dict:
    """Per-checkpoint expected perturbed loss, and its Monte Carlo estimate with error."""
    from ._noise import expected_perturbed_loss
    from ._noise_estimates import monte_carlo_perturbed_loss

    if args.noise != "absolute" and traj.times[0] != 0:
        raise ValueError("relative-init noise needs checkpoint 0 in --checkpoints (the init is its reference)")
    from .output import progress

    if args.mc_samples == 1:
        raise ValueError("--mc-samples needs at least 2 draws for a standard error (or 0 for none)")
    W1, W2 = checkpoint_weights(args, teacher, traj)
    s1, s2 = layer_stds(args, W1, W2)
    with np.errstate(over="ignore", invalid="ignore"):
        epl = expected_perturbed_loss(W1, W2, teacher, s1, s2)
    if not np.all(np.isfinite(epl)):
        raise ValueError(f"--sigma {args.sigma:g} overflows float64 in the expected perturbed loss "
                         f"(it grows as σ⁴); use a smaller σ")
    out = {"expected_perturbed_loss": epl}
    if args.mc_samples:
        bar = progress(args.mc_samples, "Monte Carlo draws", enabled=args.mc_samples >= 8192, unit="draw")
        update = None if bar is None else (lambda k: bar.update(k - bar.n))
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                mean, err = monte_carlo_perturbed_loss(W1, W2, teacher, s1, s2, args.mc_samples, args.seed,
                                                       progress=update)
        finally:
            if bar is not None:
                bar.close()
        out["monte_carlo_perturbed_loss"] = mean
        out["monte_carlo_stderr"] = err
    out["noise_std_W1"] = np.broadcast_to(s1, traj.times.shape)
    out["noise_std_W2"] = np.broadcast_to(s2, traj.times.shape)
    return out
