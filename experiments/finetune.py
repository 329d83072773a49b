"""Fine-tuning every checkpoint at once on the second chain, at fixed rates.

Each checkpoint is fine-tuned for K steps at a constant rate with a fresh optimiser
state (the variant's optimiser: SGD with its momentum, or Adam without weight decay), on
the same K batches from the second chain for every checkpoint and rate; `seeds` batch
orders (fine-tuning seeds) run side by side (vmap), the same ones at every checkpoint, so
differences between checkpoints are paired. One jitted function serves every checkpoint
and rate (the rate is traced); a Python loop over checkpoints measured as fast as
vmapping them on 2 CPU cores and compiles faster.
Afterwards both chains score the model exactly (probes.evaluate).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from .language import sample
from .model import GPTConfig
from .probes import evaluate
from .train import lm_loss


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 100  # fine-tuning steps K
    batch_size: int = 64
    rates: tuple = (0.5, 0.15)  # constant fine-tuning rates; () = chosen inside the linear theory's U window
    seeds: int = 3  # fine-tunings per checkpoint and rate (batch orders), the same at every checkpoint

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.seeds < 1 or any(not r > 0 for r in self.rates):
            raise ValueError("fine-tuning needs positive steps, batch size, seeds and rates")


def finetune_optimizer(optimizer: str, lr, momentum: float = 0.9) -> optax.GradientTransformation:
    if optimizer == "sgd":
        return optax.sgd(lr, momentum=momentum or None)
    return optax.adam(lr)


@functools.lru_cache(maxsize=8)
def make_finetune(cfg: GPTConfig, steps: int, batch_size: int, optimizer: str, momentum: float, sampler=None,
                  evaluator=None):
    """A jitted f(params, rate, keys, tokens_a, tokens_b, tables_a, tables_b) → {pretrain_excess, pretrain_loss,
    finetune_excess, finetune_loss} after `steps` fine-tuning steps on chain b, one value per key (the
    fine-tuning seeds, vmapped).

    sampler and evaluator replace `sample` and `evaluate` (real text: experiments/text_run.py)."""
    draw = sampler or sample

    def tune(params, lr, key, tables_b):
        opt = finetune_optimizer(optimizer, lr, momentum)

        def step(carry, t):
            p, s = carry
            tokens = draw(jax.random.fold_in(key, t), tables_b, batch_size, cfg.context + 1)
            updates, s = opt.update(jax.grad(lm_loss)(p, cfg, tokens), s, p)
            return (optax.apply_updates(p, updates), s), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
        return params

    def run(params, lr, keys, tokens_a, tokens_b, tables_a, tables_b):
        one = lambda k: score_both(tune(params, lr, k, tables_b), cfg, tokens_a, tokens_b, tables_a, tables_b,  # noqa: E731
                                   evaluator)
        return jax.vmap(one)(keys)  # fine-tuning seeds (batch orders) side by side

    return jax.jit(run)


def score_both(params, cfg, tokens_a, tokens_b, tables_a, tables_b, evaluator=None) -> dict:
    ev = evaluator or evaluate
    ex_a, loss_a, _ = ev(params, cfg, tokens_a, tables_a)
    ex_b, loss_b, _ = ev(params, cfg, tokens_b, tables_b)
    return {"pretrain_excess": ex_a, "pretrain_loss": loss_a, "finetune_excess": ex_b, "finetune_loss": loss_b}
