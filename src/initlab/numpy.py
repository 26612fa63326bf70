"""The initlab schemes as NumPy arrays, drawn with a ``numpy.random.Generator``.

This is the form the tutorials show: ``W = he_normal((fan_in, fan_out))`` for a layer computing
``x @ W``. The default layout is therefore ``"keras"``: a dense weight is ``(fan_in, fan_out)`` and
a convolution kernel ``(*kernel, in_channels, out_channels)``; pass ``layout="torch"`` for
``(out, in, *kernel)`` arrays.

Every function takes the scheme's own parameters as keywords (``he_normal(shape,
mode="fan_out")``), plus ``rng`` (a Generator) or ``seed``, ``layout``, ``groups`` and ``dtype``.

Example:
    >>> import numpy as np
    >>> from initlab.numpy import he_normal
    >>> W = he_normal((784, 256), seed=0)
    >>> round(float(W.std() * np.sqrt(784 / 2)), 1)
    1.0
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from initlab.arguments import check_seed, describe_value
from initlab.errors import ConfigError
from initlab.fans import Layout, shape_tuple
from initlab.schemes import Constant, get

__all__ = [
    "constant",
    "delta_orthogonal",
    "dirac",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "identity",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "sample",
    "sparse",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

Array = np.ndarray[Any, Any]


def sample(
    scheme: str,
    shape: Sequence[int],
    *,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
    layout: Layout = "keras",
    groups: int = 1,
    dtype: Any = np.float64,
    **params: Any,
) -> Array:
    """An array of ``shape`` drawn from the scheme named ``scheme`` with ``params``.

    Args:
        scheme: a scheme name or alias (see ``initlab schemes``).
        shape: the array's shape.
        rng: the Generator to draw from. Mutually exclusive with ``seed``.
        seed: seed of a fresh ``np.random.default_rng(seed)``.
        layout: axis order (default ``"keras"``: ``(..., fan_in, fan_out)``).
        groups: the layer's groups, for grouped convolutions.
        dtype: the array's dtype.
        **params: the scheme's parameters.
    """
    if rng is not None and seed is not None:
        raise ConfigError(
            f"{scheme}: pass either rng or seed, not both (got rng={rng!r} and seed={seed!r})."
        )
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ConfigError(
            f"{scheme}: rng must be a numpy.random.Generator, got {describe_value(rng)}; "
            "e.g. rng=np.random.default_rng(0) (torch generators go to initlab.init)."
        )
    if seed is not None:
        check_seed(scheme, seed)
    chosen = get(scheme, **params)
    if not isinstance(chosen, Constant) and not np.issubdtype(np.dtype(dtype), np.floating):
        # Random draws cast to an integer dtype truncate to (mostly) zeros without a word.
        raise ConfigError(
            f"{scheme}: dtype {np.dtype(dtype)} is not floating; random draws need a floating "
            "dtype (np.float64, np.float32, np.float16)."
        )
    generator = rng if rng is not None else np.random.default_rng(seed)
    return chosen.array(shape_tuple(shape), generator, layout=layout, groups=groups, dtype=dtype)


# sample's signature without ``scheme``: what help() and inspect show for the named forms.
_NAMED_SIGNATURE = inspect.signature(sample).replace(
    parameters=list(inspect.signature(sample).parameters.values())[1:]
)


def _named(scheme: str) -> Callable[..., Array]:
    def draw(shape: Sequence[int], **options: Any) -> Array:
        return sample(scheme, shape, **options)

    cls_doc = (get(scheme).__doc__ or "").strip().splitlines()[0]
    draw.__name__ = draw.__qualname__ = scheme
    draw.__doc__ = f"{cls_doc}\n\nNumPy form of scheme {scheme!r}; see :func:`sample`."
    draw.__signature__ = _NAMED_SIGNATURE  # type: ignore[attr-defined]
    return draw


zeros = _named("zeros")
ones = _named("ones")
constant = _named("constant")
uniform = _named("uniform")
normal = _named("normal")
truncated_normal = _named("truncated_normal")
variance_scaling = _named("variance_scaling")
xavier_uniform = _named("xavier_uniform")
xavier_normal = _named("xavier_normal")
glorot_uniform = _named("glorot_uniform")
glorot_normal = _named("glorot_normal")
he_uniform = _named("he_uniform")
he_normal = _named("he_normal")
lecun_uniform = _named("lecun_uniform")
lecun_normal = _named("lecun_normal")
orthogonal = _named("orthogonal")
identity = _named("identity")
dirac = _named("dirac")
delta_orthogonal = _named("delta_orthogonal")
sparse = _named("sparse")
