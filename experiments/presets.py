"""Run configurations: presets (ci, default, gpu) × variants (theory, realistic).

theory:    no LayerNorm, init std 0.02, SGD with momentum 0.9 (lr 0.5), constant rate.
realistic: pre-LayerNorm, init std 0.02, AdamW (lr 1e-3, weight decay 0.1 on matrices),
           100 warmup steps then constant.
The sizes follow the measured facts in the shared TRANSFORMER-NOTES: the U-shaped
perturbed loss needs a long flat tail of weak modes (rank 64, α 0.5, s1 0.5), and the
default model (V 128, d 64, 4 heads, 2 layers, context 32, batch 64) trains 8000 steps in
4–7.5 minutes on 2 shared CPU cores; a whole default run (probes, fine-tuning at three rates
× three seeds) took 10–17 minutes per seed there (measured, issue 9). The theory variant's
fine-tuning rates are left to the linear theory's U window (rates = ()).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .finetune import FinetuneConfig
from .model import GPTConfig
from .train import TrainConfig

PRESETS = ("ci", "default", "gpu")
VARIANTS = ("theory", "realistic")


@dataclass(frozen=True)
class LanguageConfig:
    """The pre-training chain (vocab, rank, s1, alpha, seed) and the fine-tuning change (ft_*).

    Each field has one meaning: the fine-tuning change is set by ft_kind, ft_rank and
    ft_strength (rank) or ft_angle (rotate) alone — changing s1 leaves it as it is.
    """

    vocab: int = 128
    rank: int = 64
    s1: float = 0.5
    alpha: float = 0.5
    seed: int = 0  # seed of the singular vectors
    ft_kind: str = "rank"  # second chain: "rank" (L + rank-k change) or "rotate" (rotated v_k)
    ft_rank: int = 8
    ft_strength: float = 0.5  # strength of each added mode, in mode-strength units (kind "rank")
    ft_angle: float = 0.5  # radians, for "rotate"

    def __post_init__(self):
        if self.vocab < 2:
            raise ValueError(f"--vocab must be at least 2, got {self.vocab}")
        if not 1 <= self.rank <= self.vocab - 1:
            raise ValueError(f"--rank must lie in [1, vocab − 1 = {self.vocab - 1}], got {self.rank}")
        if not (math.isfinite(self.s1) and self.s1 > 0):
            raise ValueError(f"--s1 must be positive and finite, got {self.s1}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"--alpha must be non-negative and finite, got {self.alpha}")
        if self.ft_kind not in ("rank", "rotate"):
            raise ValueError(f"--ft-kind must be rank or rotate, got {self.ft_kind!r}")
        if self.ft_strength is None or not (math.isfinite(self.ft_strength) and self.ft_strength > 0):
            raise ValueError(f"--ft-strength must be positive and finite, got {self.ft_strength}")
        if not math.isfinite(self.ft_angle):
            raise ValueError(f"--ft-angle must be finite, got {self.ft_angle}")
        top = self.vocab - 1 if self.ft_kind == "rank" else min(self.rank, self.vocab - 1 - self.rank)
        if not 1 <= self.ft_rank <= top:
            raise ValueError(f"--ft-rank must lie in [1, {top}] for a {self.ft_kind} change of a rank-{self.rank} "
                             f"chain over {self.vocab} tokens, got {self.ft_rank}")


@dataclass(frozen=True)
class ProbeConfig:
    n_eval: int = 256  # held-out sequences per chain
    draws: int = 16  # noise draws per σ (same keys at every checkpoint)
    sigmas_relative: tuple = (0.3, 0.5, 0.7, 1.0)  # std = σ × RMS of each matrix
    sigmas_absolute: tuple = (0.05, 0.07, 0.1)  # std = σ
    hessian_probes: int = 8  # Hutchinson probes (0: skip)
    hessian_eval: int = 64  # held-out sequences for the Hessian trace
    map_batch: int = 4  # noise draws evaluated at once

    def __post_init__(self):
        if self.n_eval < 1 or self.draws < 2 or self.hessian_probes < 0 or self.hessian_eval < 1:
            raise ValueError("n_eval ≥ 1, draws ≥ 2, hessian_probes ≥ 0, hessian_eval ≥ 1")
        if any(not s >= 0 for s in (*self.sigmas_relative, *self.sigmas_absolute)):
            raise ValueError("noise scales must be non-negative")


@dataclass(frozen=True)
class RunConfig:
    preset: str = "default"
    variant: str = "theory"
    seed: int = 0  # init, data order, noise draws, held-out sets
    language: LanguageConfig = field(default_factory=LanguageConfig)
    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def with_language(self, **changes) -> "RunConfig":
        """This configuration on another language (LanguageConfig fields); the model's vocabulary follows."""
        lang = dataclasses.replace(self.language, **changes)
        return dataclasses.replace(self, language=lang, model=dataclasses.replace(self.model, vocab_size=lang.vocab))

    def __post_init__(self):
        if self.model.vocab_size != self.language.vocab:
            raise ValueError(f"model vocab {self.model.vocab_size} ≠ language vocab {self.language.vocab}")
        if not self.finetune.rates and self.train.optimizer != "sgd":
            raise ValueError("fine-tuning rates can be chosen from the linear theory's U window only for SGD: "
                             "give --ft-rates")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        tup = lambda sub: {k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()}  # noqa: E731
        return cls(preset=d["preset"], variant=d["variant"], seed=d["seed"],
                   language=LanguageConfig(**d["language"]), model=GPTConfig(**d["model"]),
                   train=TrainConfig(**d["train"]), probe=ProbeConfig(**tup(d["probe"])),
                   finetune=FinetuneConfig(**tup(d["finetune"])))


def _variant(variant: str, steps: int) -> tuple[dict, dict, tuple]:
    """(model overrides, train overrides, fine-tuning rates) of a variant."""
    if variant == "theory":
        return dict(layernorm=False, init_std=0.02), dict(optimizer="sgd", lr=0.5, momentum=0.9), ()  # () = from the theory
    if variant == "realistic":
        return (dict(layernorm=True, init_std=0.02),
                dict(optimizer="adamw", lr=1e-3, weight_decay=0.1, warmup_steps=min(100, steps // 10)),
                (1e-3, 3e-4))
    raise ValueError(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")


def get_preset(preset: str = "default", variant: str = "theory", seed: int = 0) -> RunConfig:
    if preset.startswith("text-"):  # real text: experiments/text_run.py
        from .text_run import get_text_preset

        return get_text_preset(preset, variant, seed)
    if preset == "ci":  # a smaller model on a smaller language, same protocol: 30–60 s on 2 shared CPU cores
        lang = LanguageConfig(vocab=64, rank=32)
        model = dict(vocab_size=64, context=16, d_model=32, n_heads=2, n_layers=1)
        train = dict(steps=800, batch_size=32, n_checkpoints=8, first_checkpoint=30, chunk=50)
        probe = ProbeConfig(n_eval=128, draws=16, sigmas_relative=(0.5, 1.0), sigmas_absolute=(0.1,),
                            hessian_probes=4, hessian_eval=32)
        ft = dict(steps=50, batch_size=32)
    elif preset == "default":  # 10–17 minutes per seed on 2 shared CPU cores
        lang, model = LanguageConfig(), dict()
        train = dict(steps=8000, n_checkpoints=19, first_checkpoint=30, chunk=50)
        probe = ProbeConfig()
        ft = dict(steps=100, batch_size=32)
    elif preset == "gpu":  # sized for one GPU: ≈ 3.7M parameters, 32k tokens a step
        lang = LanguageConfig(vocab=512, rank=256)
        model = dict(vocab_size=512, context=128, d_model=256, n_heads=8, n_layers=4)
        train = dict(steps=30000, batch_size=256, n_checkpoints=25, first_checkpoint=30, chunk=250)
        probe = ProbeConfig(n_eval=512, draws=32, sigmas_relative=(0.3, 0.5, 0.7, 1.0),
                            sigmas_absolute=(0.03, 0.05, 0.07, 0.1), hessian_probes=16, hessian_eval=128,
                            map_batch=8)
        ft = dict(steps=200, batch_size=256)
    else:
        raise ValueError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    model_v, train_v, rates = _variant(variant, train["steps"])
    return RunConfig(preset=preset, variant=variant, seed=seed, language=lang,
                     model=GPTConfig(**{"vocab_size": lang.vocab, **model, **model_v}),
                     train=TrainConfig(**{**train, **train_v}), probe=probe,
                     finetune=FinetuneConfig(rates=rates, **ft))
