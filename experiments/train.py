"""Pre-training in jitted `lax.scan` chunks, with log-spaced checkpoints on disk and resume.

Determinism: the batch of step t is sampled from fold_in(data_key, t), so the data do not
depend on how the run was chunked or interrupted. A checkpoint holds the step, the
parameters, the optimiser state and the mean training loss since the previous
checkpoint; a run that finds checkpoints in its folder continues from the last one and
ends bit-for-bit where an unbroken run ends.
"""

from __future__ import annotations

import functools
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from linear_theory.output import atomic_write_bytes

from .language import ChainTables, sample
from .model import GPTConfig, forward, init_params, is_matrix


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 8000
    batch_size: int = 64
    optimizer: str = "sgd"  # "sgd" (with momentum) or "adamw"
    lr: float = 0.5  # peak learning rate
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # on matrices: decoupled (adamw) or the ℓ2 term (λ/2)‖W‖² (sgd)
    sam_rho: float = 0.0  # > 0: sharpness-aware minimisation on top of the optimiser, radius ρ
    z_loss: float = 0.0  # > 0: z · mean(logsumexp(logits)²) added to the training loss (logit growth)
    schedule: str = "constant"  # "constant", "cosine" or "wsd" (warmup-stable-decay)
    warmup_steps: int = 0
    decay_fraction: float = 0.2  # wsd: fraction of the run spent decaying linearly to 0
    n_checkpoints: int = 19  # step 0, then log-spaced from first_checkpoint to the last step
    first_checkpoint: int = 10
    chunk: int = 50  # steps per jitted scan call

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"unknown optimizer {self.optimizer!r} (sgd or adamw)")
        if self.schedule not in ("constant", "cosine", "wsd"):
            raise ValueError(f"unknown schedule {self.schedule!r} (constant, cosine or wsd)")
        if self.steps < 1 or self.batch_size < 1 or self.chunk < 1 or self.first_checkpoint < 1:
            raise ValueError("steps, batch_size, chunk and first_checkpoint must be positive")
        if self.n_checkpoints < 2:
            raise ValueError("n_checkpoints must be at least 2")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction must lie in [0, 1], got {self.decay_fraction}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        for name in ("weight_decay", "sam_rho", "z_loss"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {v}")


def lr_schedule(tc: TrainConfig):
    """Learning rate as a function of the step: linear warmup, then constant, cosine or WSD."""
    warm = min(tc.warmup_steps, tc.steps)
    rest = tc.steps - warm
    if tc.schedule == "cosine":
        after = optax.cosine_decay_schedule(tc.lr, max(rest, 1))
    elif tc.schedule == "wsd":
        decay = int(round(tc.decay_fraction * rest))
        after = optax.join_schedules(
            [optax.constant_schedule(tc.lr), optax.linear_schedule(tc.lr, 0.0, max(decay, 1))], [rest - decay])
    else:
        after = optax.constant_schedule(tc.lr)
    if not warm:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, tc.lr, warm), after], [warm])


def make_optimizer(tc: TrainConfig, lr=None) -> optax.GradientTransformationExtraArgs:
    """SGD with momentum, or AdamW; weight decay on the matrices only (decoupled for AdamW, the
    coupled ℓ2 gradient λW for SGD); with sam_rho > 0, SAM around it (optax.contrib.sam, opaque
    mode: each step takes the gradient at W + ρ g/‖g‖, ‖g‖ over all parameters, Foret et al.).
    `update` takes grad_fn(params, state) → gradient (used by SAM only). `lr` overrides the schedule."""
    rate = lr_schedule(tc) if lr is None else lr
    mask = lambda p: jax.tree_util.tree_map(is_matrix, p)  # noqa: E731
    if tc.optimizer == "sgd":
        opt = optax.sgd(rate, momentum=tc.momentum or None)
        if tc.weight_decay:
            opt = optax.chain(optax.add_decayed_weights(tc.weight_decay, mask), opt)
    else:
        opt = optax.adamw(rate, weight_decay=tc.weight_decay, mask=mask)
    if tc.sam_rho:
        ascent = optax.chain(optax.contrib.normalize(), optax.sgd(tc.sam_rho))
        return optax.contrib.sam(opt, ascent, sync_period=2, opaque_mode=True)
    return optax.with_extra_args_support(opt)


def checkpoint_steps(total: int, n: int, first: int = 10) -> list[int]:
    """Step 0 and about n − 1 log-spaced steps from `first` to `total` (distinct integers)."""
    first = min(max(first, 1), total)
    if n <= 2 or total <= first:
        return sorted({0, total})
    steps = np.unique(np.round(np.geomspace(first, total, n - 1)).astype(int))
    return [0] + [int(s) for s in steps]


def lm_loss(params, cfg: GPTConfig, tokens, z_loss: float = 0.0):
    """Mean cross-entropy of the next token, sampled targets (nats); with z_loss > 0 the
    training objective adds z_loss · mean(logsumexp(logits)²), a penalty on logit growth."""
    logits = forward(params, cfg, tokens[:, :-1])
    logp = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()
    if z_loss:
        loss = loss + z_loss * jnp.mean(jax.nn.logsumexp(logits, axis=-1) ** 2)
    return loss


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar
    params: dict
    opt_state: tuple


def init_state(cfg: GPTConfig, tc: TrainConfig, key) -> TrainState:
    params = init_params(cfg, key)
    return TrainState(jnp.asarray(0, jnp.int32), params, make_optimizer(tc).init(params))


@functools.lru_cache(maxsize=8)
def make_chunk_fn(cfg: GPTConfig, tc: TrainConfig, sampler=None):
    """A jitted f(state, tables, data_key, stop) running `tc.chunk` steps, each skipped once the step reaches `stop`.

    Cached per configuration, so runs of the same configuration in one process compile once.
    sampler(key, tables, batch, length) draws a batch (default: the Markov chain's `sample`).
    """
    opt = make_optimizer(tc)
    draw = sampler or sample

    def train_step(state, data_key, tables):
        tokens = draw(jax.random.fold_in(data_key, state.step), tables, tc.batch_size, cfg.context + 1)
        grad = jax.value_and_grad(lm_loss)
        loss, grads = grad(state.params, cfg, tokens, tc.z_loss)
        updates, opt_state = opt.update(grads, state.opt_state, state.params,
                                        grad_fn=lambda p, _: grad(p, cfg, tokens, tc.z_loss)[1])
        return TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state), loss

    @jax.jit
    def chunk_fn(state, tables, data_key, stop):
        def body(carry, _):
            state, loss_sum = carry
            state, loss = jax.lax.cond(state.step < stop, train_step, lambda s, k, t: (s, jnp.float32(0.0)),
                                       state, data_key, tables)
            return (state, loss_sum + loss), None

        (state, loss_sum), _ = jax.lax.scan(body, (state, jnp.float32(0.0)), None, length=tc.chunk)
        return state, loss_sum

    return chunk_fn


# ---------------------------------------------------------------- checkpoints on disk


def checkpoint_path(folder, step: int) -> Path:
    return Path(folder) / f"step_{step:08d}.npz"


def save_checkpoint(folder, state: TrainState, train_loss: float) -> Path:
    leaves = jax.tree_util.tree_leaves((state.params, state.opt_state))
    buf = io.BytesIO()
    np.savez(buf, step=np.asarray(state.step), train_loss=np.float64(train_loss),
             **{f"leaf_{i:04d}": np.asarray(x) for i, x in enumerate(leaves)})
    return atomic_write_bytes(checkpoint_path(folder, int(state.step)), buf.getvalue())


def load_checkpoint(path, template: TrainState) -> tuple[TrainState, float]:
    """Read a checkpoint into the tree structure of `template` (a freshly initialised state)."""
    leaves, treedef = jax.tree_util.tree_flatten((template.params, template.opt_state))
    with np.load(path) as f:
        new = [jnp.asarray(f[f"leaf_{i:04d}"], dtype=x.dtype) for i, x in enumerate(leaves)]
        if len(f.files) != len(leaves) + 2:
            raise ValueError(f"{path} does not match this model and optimiser")
        step, train_loss = int(f["step"]), float(f["train_loss"])
    for a, b in zip(new, leaves):
        if a.shape != b.shape:
            raise ValueError(f"{path} does not match this model and optimiser")
    params, opt_state = jax.tree_util.tree_unflatten(treedef, new)
    return TrainState(jnp.asarray(step, jnp.int32), params, opt_state), train_loss


def load_params(path, cfg: GPTConfig, tc: TrainConfig) -> dict:
    template = jax.eval_shape(lambda: init_state(cfg, tc, jax.random.key(0)))
    template = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), template)
    return load_checkpoint(path, template)[0].params


def train(cfg: GPTConfig, tc: TrainConfig, tables: ChainTables, seed: int, folder, progress=None,
          stop_after: int | None = None, sampler=None) -> dict:
    """Train to tc.steps, saving every checkpoint step into `folder`; resume from the last one there.

    Args:
      progress: a tqdm-like bar (update(n), set_postfix) or None.
      stop_after: stop once this step's checkpoint is written (to test resume).
      sampler: the batch sampler and `tables` its data (default: the Markov chain's `sample`).
    Returns {"steps", "train_loss", "resumed_from", "wall_s"}: the checkpoint steps, the mean
    training loss over the steps before each (nan at step 0), the step the run resumed from.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    steps = checkpoint_steps(tc.steps, tc.n_checkpoints, tc.first_checkpoint)
    key = jax.random.key(seed)
    data_key = jax.random.fold_in(key, 1)
    state = init_state(cfg, tc, jax.random.fold_in(key, 0))
    train_loss = {}

    k, resumed_from = 0, None  # the checkpoints on disk form a prefix of the schedule: resume at its end
    while k < len(steps) and checkpoint_path(folder, steps[k]).exists():
        train_loss[steps[k]] = load_checkpoint(checkpoint_path(folder, steps[k]), state)[1]
        k += 1
    if k:
        state, _ = load_checkpoint(checkpoint_path(folder, steps[k - 1]), state)
        resumed_from = steps[k - 1]
    if not checkpoint_path(folder, 0).exists():
        save_checkpoint(folder, state, float("nan"))
        train_loss[0] = float("nan")

    chunk_fn = make_chunk_fn(cfg, tc, sampler)
    t0 = time.perf_counter()
    if progress is not None:
        progress.update(int(state.step))
    for target in steps:
        if target <= int(state.step):
            continue
        if stop_after is not None and int(state.step) >= stop_after:
            break
        first, total = int(state.step), 0.0
        while int(state.step) < target:
            before = int(state.step)
            state, loss_sum = chunk_fn(state, tables, data_key, jnp.asarray(target, jnp.int32))
            n = int(state.step) - before
            total += float(loss_sum)
            if not np.isfinite(float(loss_sum)):
                raise RuntimeError(f"training diverged (non-finite loss) before step {int(state.step)}")
            if progress is not None:
                progress.update(n)
                progress.set_postfix(loss=f"{float(loss_sum) / n:.4f}")
        train_loss[target] = total / (target - first)
        save_checkpoint(folder, state, train_loss[target])
    return {"steps": [s for s in steps if s in train_loss], "train_loss": [train_loss[s] for s in steps if s in train_loss],
            "resumed_from": resumed_from, "wall_s": time.perf_counter() - t0}
