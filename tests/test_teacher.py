import numpy as np
import pytest

from linear_theory._schedules import Schedule
from linear_theory._teacher import (
    geometric_spectrum,
    hierarchical_teacher,
    make_teacher,
    parse_spectrum,
    power_law_spectrum,
)


def test_teacher_svd_and_shapes():
    t = make_teacher([3.0, 1.0, 0.2], d_in=5, d_out=4, seed=7)
    assert t.matrix.shape == (4, 5)
    np.testing.assert_allclose(np.linalg.svd(t.matrix, compute_uv=False)[:3], [3.0, 1.0, 0.2], rtol=1e-12)
    np.testing.assert_allclose(t.U.T @ t.U, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(t.V.T @ t.V, np.eye(3), atol=1e-12)
    # Same seed, same teacher; different seed, different vectors.
    np.testing.assert_array_equal(make_teacher([3.0, 1.0, 0.2], 5, 4, seed=7).U, t.U)
    assert not np.allclose(make_teacher([3.0, 1.0, 0.2], 5, 4, seed=8).U, t.U)


def test_co_diagonal_inputs():
    t = make_teacher([2.0, 1.0], d_in=4, d_out=3, seed=0, input_variances=[4.0, 0.5])
    # Σyx = A Σx and Σx has eigenvalues d along v_i and 1 elsewhere.
    np.testing.assert_allclose(t.matrix @ t.input_covariance, t.correlation, atol=1e-12)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(t.input_covariance)), [0.5, 1, 1, 4], atol=1e-12)
    np.testing.assert_allclose(t.targets, [0.5, 2.0])


@pytest.mark.parametrize("bad, msg", [
    ([1.0, -1.0], "positive"),
    ([1.0, np.nan], "finite"),
    ([1.0, 0.0], "positive"),
    ([4, 3, 2, 1], "at most"),
])
def test_bad_singular_values(bad, msg):
    with pytest.raises(ValueError, match=msg):
        make_teacher(bad, d_in=3, d_out=5)


def test_named_spectra():
    np.testing.assert_allclose(power_law_spectrum(4, 2.0, 0.5), 2.0 / np.sqrt([1, 2, 3, 4]))
    np.testing.assert_allclose(geometric_spectrum(3, 1.0, 0.1), [1.0, 0.1, 0.01])
    np.testing.assert_allclose(parse_spectrum("power:3:1:1"), [1, 1 / 2, 1 / 3])
    for bad in ("nope:3", "power:x", "power:0", "power:2.5", "power:3:1:1:1"):
        with pytest.raises(ValueError):
            parse_spectrum(bad)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_hierarchical_spectrum(depth):
    """For the binary tree, the item Gram matrix YᵀY counts shared ancestors; its
    eigenvectors are the uniform vector and Haar-like splits at each level m, with
    eigenvalue Σ_{l>m} P/2^l. So the singular values of Y/√P are √(Σ_{l>m} 2^-l) with
    multiplicity 2^m, and √(Σ_{l≥0} 2^-l) once for the root."""
    t = hierarchical_teacher(depth)
    P = 2**depth
    root = np.sqrt(sum(2.0**-l for l in range(depth + 1)))
    expected = [root]
    for m in range(depth):
        expected += [np.sqrt(sum(2.0**-l for l in range(m + 1, depth + 1)))] * 2**m
    np.testing.assert_allclose(t.s, expected, rtol=1e-12)
    assert t.d_in == P and t.d_out == 2 * P - 1
    np.testing.assert_allclose(np.abs(t.V[:, 0]), 1 / np.sqrt(P), rtol=1e-12)


def test_schedules():
    n = 100
    cos = Schedule("cosine", total_steps=n)
    assert float(cos(0)) == 1.0 and abs(float(cos(n))) < 1e-12 and abs(float(cos(n // 2)) - 0.5) < 1e-6
    wsd = Schedule("wsd", total_steps=n, warmup_steps=10, decay_fraction=0.2)
    vals = np.array([float(wsd(k)) for k in range(n + 1)])
    np.testing.assert_allclose(vals[:11], np.linspace(0, 1, 11), atol=1e-6)
    np.testing.assert_allclose(vals[10:81], 1.0)
    np.testing.assert_allclose(vals[80:], np.linspace(1, 0, 21), atol=1e-6)
    with pytest.raises(ValueError):
        Schedule("linear", total_steps=10)
