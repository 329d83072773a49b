"""Atomic file output (kept for old imports; the helpers live in `linear_theory.output`)."""

from .output import atomic_savefig, atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401
