"""Float64 for the theory code paths, without switching it on for the whole process.

The transformer experiments train in float32 in the same process, so the theory enables
JAX's 64-bit mode only while one of its public functions runs.
"""

import functools

import jax


def x64(fn):
    """Decorate `fn` so that JAX traces and runs it with 64-bit floats enabled."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapped
