"""Linear teachers A = U diag(s) Vᵀ and the spectra they are built from.

Conventions (THEORY.md §2): inputs are whitened by default, E[x xᵀ] = I. With the
co-diagonal option the input covariance is Σx = V diag(d) Vᵀ + (I − V Vᵀ) and `s` are the
singular values of the input-output correlation Σyx = U diag(s) Vᵀ, so the teacher map is
A = Σyx Σx⁻¹ = U diag(s / d) Vᵀ and mode i converges to s_i / d_i.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
    """A linear teacher with fixed singular pairs.

    Attributes:
      U: (d_out, r) orthonormal columns, the output singular vectors.
      s: (r,) singular values of Σyx, non-increasing, positive.
      V: (d_in, r) orthonormal columns, the input singular vectors.
      input_variances: (r,) input variance d_i along v_i, or None for whitened inputs
        (all ones). Directions orthogonal to every v_i have unit variance.

    `make_teacher` draws U and V on first use (`drawn`): the per-mode solvers (predict,
    the exact GD map, the phase diagram) never need them, and drawing two Haar matrices
    of size 2000 costs more than a whole prediction. Same seed, same vectors.
    """

    U: np.ndarray
    s: np.ndarray
    V: np.ndarray
    input_variances: np.ndarray | None = None

    def __post_init__(self):
        U, s, V = (np.asarray(x, dtype=np.float64) for x in (self.U, self.s, self.V))
        if s.ndim != 1 or U.ndim != 2 or V.ndim != 2:
            raise ValueError("U, V must be matrices and s a vector")
        r = s.shape[0]
        if U.shape[1] != r or V.shape[1] != r:
            raise ValueError(f"U {U.shape} and V {V.shape} must have {r} columns, one per singular value")
        check_singular_values(s, max_rank=min(U.shape[0], V.shape[0]))
        d = self.input_variances
        if d is not None:
            d = np.asarray(d, dtype=np.float64)
            if d.shape != (r,) or not np.all(np.isfinite(d)) or np.any(d <= 0):
                raise ValueError("input_variances must be one finite positive value per singular value")
        object.__setattr__(self, "U", U)
        object.__setattr__(self, "s", s)
        object.__setattr__(self, "V", V)
        object.__setattr__(self, "input_variances", d)

    @classmethod
    def drawn(cls, singular_values, d_in: int, d_out: int, seed: int = 0, input_variances=None) -> "Teacher":
        """A teacher whose Haar-random U (d_out × r) and V (d_in × r) are drawn from `seed`
        (U first, then V, from one generator) only when first read."""
        s = check_singular_values(singular_values, max_rank=min(d_in, d_out))
        self = object.__new__(cls)
        for name, value in (("s", s), ("input_variances", None), ("_dims", (int(d_in), int(d_out))),
                            ("_seed", int(seed))):
            object.__setattr__(self, name, value)
        if input_variances is not None:  # validated as in __post_init__
            d = np.asarray(input_variances, dtype=np.float64)
            if d.shape != s.shape or not np.all(np.isfinite(d)) or np.any(d <= 0):
                raise ValueError("input_variances must be one finite positive value per singular value")
            object.__setattr__(self, "input_variances", d)
        return self

    def __getattr__(self, name):  # only reached when U or V has not been drawn yet
        if name in ("U", "V") and "_seed" in self.__dict__:
            rng = np.random.default_rng(self.__dict__["_seed"])
            d_in, d_out = self.__dict__["_dims"]
            object.__setattr__(self, "U", random_orthonormal(rng, d_out, self.s.size))
            object.__setattr__(self, "V", random_orthonormal(rng, d_in, self.s.size))
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def d_in(self) -> int:
        dims = self.__dict__.get("_dims")
        return self.V.shape[0] if dims is None else dims[0]

    @property
    def d_out(self) -> int:
        dims = self.__dict__.get("_dims")
        return self.U.shape[0] if dims is None else dims[1]

    @property
    def rank(self) -> int:
        return self.s.shape[0]

    @property
    def variances(self) -> np.ndarray:
        """Input variance along each v_i (ones when whitened)."""
        return np.ones_like(self.s) if self.input_variances is None else self.input_variances

    @property
    def targets(self) -> np.ndarray:
        """The strength each mode converges to, s_i / d_i (= s_i when whitened)."""
        return self.s / self.variances

    @property
    def matrix(self) -> np.ndarray:
        """The teacher map A = U diag(s/d) Vᵀ, shape (d_out, d_in)."""
        return (self.U * self.targets) @ self.V.T

    @property
    def correlation(self) -> np.ndarray:
        """Σyx = U diag(s) Vᵀ."""
        return (self.U * self.s) @ self.V.T

    @property
    def input_covariance(self) -> np.ndarray:
        """Σx = I + V diag(d − 1) Vᵀ, shape (d_in, d_in)."""
        return np.eye(self.d_in) + (self.V * (self.variances - 1.0)) @ self.V.T


def check_singular_values(s, max_rank: int | None = None) -> np.ndarray:
    """Validate a list of singular values; return it as a float64 array."""
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError("need at least one singular value")
    if not np.all(np.isfinite(s)):
        raise ValueError("singular values must be finite (got NaN or inf)")
    if np.any(s <= 0):
        raise ValueError(f"singular values must be positive (got {s[s <= 0][0]:g})")
    if max_rank is not None and s.size > max_rank:
        raise ValueError(
            f"{s.size} singular values but rank can be at most min(d_in, d_out) = {max_rank}"
        )
    return s


def random_orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """An (n, k) matrix with orthonormal columns, Haar-distributed (QR with sign fix)."""
    if k > n:
        raise ValueError(f"cannot have {k} orthonormal columns in dimension {n}")
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))


def make_teacher(
    singular_values,
    d_in: int,
    d_out: int,
    seed: int = 0,
    input_variances=None,
) -> Teacher:
    """A teacher with the given singular values (any order is accepted; kept as given)
    and Haar-random singular vectors drawn from `seed` (on first use of U or V)."""
    if d_in < 1 or d_out < 1:
        raise ValueError("d_in and d_out must be positive")
    return Teacher.drawn(singular_values, d_in, d_out, seed, input_variances)


def power_law_spectrum(rank: int, s1: float = 1.0, alpha: float = 1.0) -> np.ndarray:
    """s_i = s1 · i^(−alpha), i = 1..rank."""
    return s1 * np.arange(1, rank + 1, dtype=np.float64) ** (-float(alpha))


def geometric_spectrum(rank: int, s1: float = 1.0, ratio: float = 0.5) -> np.ndarray:
    """s_i = s1 · ratio^(i−1), i = 1..rank."""
    if not 0 < ratio <= 1:
        raise ValueError("geometric ratio must be in (0, 1]")
    return s1 * float(ratio) ** np.arange(rank, dtype=np.float64)


def hierarchical_dataset(depth: int) -> np.ndarray:
    """Item/feature matrix of Saxe, McClelland & Ganguli (2019), shape (features, items).

    2^depth items sit at the leaves of a binary tree; each tree node (root included) is a
    feature that is on (1) for every item below it.
    """
    if depth < 1:
        raise ValueError("hierarchy depth must be at least 1")
    n_items = 2**depth
    rows = []
    for level in range(depth + 1):
        width = n_items >> level  # items under one node of this level
        for node in range(2**level):
            row = np.zeros(n_items)
            row[node * width : (node + 1) * width] = 1.0
            rows.append(row)
    return np.array(rows)


def hierarchical_teacher(depth: int, scale: float = 1.0) -> Teacher:
    """The teacher of the hierarchical dataset with whitened one-hot items.

    Items are presented as x = √P e_item (P = 2^depth, uniform), so E[x xᵀ] = I and the
    teacher is A = scale · Y / √P. Its SVD (nonzero part) gives the modes, largest first;
    singular values come in groups of equal size, one group per tree level.
    """
    Y = hierarchical_dataset(depth)
    A = scale * Y / np.sqrt(Y.shape[1])
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    keep = s > 1e-12 * s[0]
    return Teacher(U[:, keep], s[keep], Vt[keep].T)


SPECTRA = {
    "power": "power:RANK[:S1[:ALPHA]]  s_i = S1 · i^-ALPHA (defaults S1=1, ALPHA=1)",
    "geometric": "geometric:RANK[:S1[:RATIO]]  s_i = S1 · RATIO^(i-1) (defaults 1, 0.5)",
    "hierarchical": "hierarchical:DEPTH[:SCALE]  nonzero singular values of the Saxe et al. (2019) tree dataset",
}


def parse_spectrum(spec: str) -> np.ndarray:
    """Singular values from a spectrum string such as 'power:8:2:0.5' (see SPECTRA)."""
    name, *fields = spec.split(":")
    if name not in SPECTRA:
        raise ValueError(f"unknown spectrum {name!r}; known: {', '.join(SPECTRA)}")
    try:
        nums = [float(f) for f in fields]
    except ValueError:
        raise ValueError(f"spectrum {spec!r}: fields after the name must be numbers") from None
    if not nums or nums[0] != int(nums[0]) or nums[0] < 1:
        raise ValueError(f"spectrum {spec!r}: first field must be a positive integer")
    n = int(nums[0])
    if name == "power":
        if len(nums) > 3:
            raise ValueError(f"usage: {SPECTRA[name]}")
        return power_law_spectrum(n, *nums[1:])
    if name == "geometric":
        if len(nums) > 3:
            raise ValueError(f"usage: {SPECTRA[name]}")
        return geometric_spectrum(n, *nums[1:])
    if len(nums) > 2:
        raise ValueError(f"usage: {SPECTRA[name]}")
    return hierarchical_teacher(n, *nums[1:]).s
