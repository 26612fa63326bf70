"""`Scheme`: one frozen, serializable description of how to initialize a tensor.

A scheme is a value (name + parameters), never a function with hidden state. It reports the
statistics it implies for a shape (:meth:`Scheme.stats`), the law its elements are drawn from
(:meth:`Scheme.law`), fills a torch tensor in place (:meth:`Scheme.fill_`) or builds a NumPy
array (:meth:`Scheme.array`), and round-trips through ``to_config()`` / :func:`from_config`.
Schemes are found by name with :func:`get`.

Describing, listing and validating a scheme needs neither torch nor NumPy (``initlab schemes``
answers without them); they are imported by the methods that fill tensors and arrays.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.fans import Fans, Layout

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "ElementwiseLaw",
    "Scheme",
    "ValueStats",
    "Weight",
    "from_config",
    "get",
    "register",
    "scheme_aliases",
    "scheme_class",
    "scheme_names",
]

SchemeT = TypeVar("SchemeT", bound="type[Scheme]")


@dataclasses.dataclass(frozen=True)
class ValueStats:
    """What a scheme implies for the values of one tensor.

    Attributes:
        mean: expected value of an element.
        std: standard deviation of the values.
        bound: largest absolute value a sample can take; ``None`` when unbounded.
    """

    mean: float
    std: float
    bound: float | None


_REGISTRY: dict[str, type[Scheme]] = {}
_ALIASES: dict[str, str] = {}


@dataclasses.dataclass(frozen=True)
class Weight:
    """The tensor a scheme is asked about: its shape, the order of its axes, the layer's groups.

    Attributes:
        shape: the tensor's sizes.
        layout: its axis order (see :mod:`initlab.fans`).
        groups: the layer's groups (grouped convolutions).
    """

    shape: tuple[int, ...]
    layout: Layout
    groups: int


@dataclasses.dataclass(frozen=True)
class Scheme(ABC):
    """Base of every initialization scheme.

    Subclasses are frozen dataclasses whose fields are the scheme's parameters; they set the
    class variables :attr:`name` (registry name) and :attr:`formula` (one line of math for
    listings) and implement the scheme's part of :meth:`stats`, :meth:`fill_` and
    :meth:`array`: ``_stats``, ``_fill`` and ``_array``, which receive the tensor's
    :class:`Weight` after ``_check`` has accepted it.
    """

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    uses_fans: ClassVar[bool] = False

    # --- what the scheme implies -------------------------------------------------------------
    def stats(
        self, shape: Sequence[int], *, layout: Layout = "torch", groups: int = 1
    ) -> ValueStats:
        """Mean, std and hard bound of the values this scheme gives a tensor of ``shape``."""
        weight = Weight(tuple(shape), layout, groups)
        self._check(weight)
        return self._stats(weight)

    def law(
        self,
        fans: Fans | Sequence[int] | None = None,
        *,
        layout: Layout = "torch",
        groups: int = 1,
    ) -> ElementwiseLaw | None:
        r"""The law every element is drawn from, i.i.d., for a weight of ``fans``.

        A constant, uniform or (truncated) normal scheme is its own law, whatever the fans. A
        variance-scaling scheme gives the law of std :math:`g/\sqrt n` for the fans: uniform
        :math:`U(\pm\sqrt3\,\sigma)`, normal or truncated normal. ``None`` when the scheme
        builds the tensor as a whole (orthogonal, identity, dirac, delta-orthogonal, sparse, a
        checkpoint), or reads fans and was given none: such a tensor is not filled element by
        element.

        Args:
            fans: the weight's :class:`~initlab.fans.Fans`, or its shape (read with ``layout``
                and ``groups``, as :func:`~initlab.fans.compute_fans` does); ``None``: unknown.
            layout: axis order of a shape given as ``fans``.
            groups: the layer's groups, for a shape given as ``fans``.

        Example:
            >>> get("he_uniform").law((64, 32))
            Uniform(a=-0.4330127018922193, b=0.4330127018922193)

        Raises:
            ShapeError: the scheme divides by a fan that is 0 for this weight.
        """
        return None

    # --- sampling ----------------------------------------------------------------------------
    def fill_(
        self,
        tensor: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        layout: Layout = "torch",
        groups: int = 1,
    ) -> torch.Tensor:
        """Fill ``tensor`` in place (under ``no_grad``) and return it.

        Args:
            tensor: the tensor to fill; its shape and ``layout`` give the fans.
            generator: the ``torch.Generator`` to draw from; the global one when ``None``.
            layout: axis order of ``tensor`` (see :mod:`initlab.fans`).
            groups: the layer's groups (grouped convolutions).
        """
        import torch

        weight = Weight(tuple(tensor.shape), layout, groups)
        self._check(weight)
        with torch.no_grad():
            return self._fill(tensor, generator, weight)

    def array(
        self,
        shape: Sequence[int],
        rng: np.random.Generator | None = None,
        *,
        layout: Layout = "keras",
        groups: int = 1,
        dtype: Any = "float64",
    ) -> np.ndarray[Any, Any]:
        """A NumPy array of ``shape`` drawn with ``rng`` (``layout`` defaults to ``(in, out)``)."""
        import numpy as np

        weight = Weight(tuple(shape), layout, groups)
        self._check(weight)
        return self._array(weight, rng if rng is not None else np.random.default_rng(), dtype)

    def sample(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        *,
        layout: Layout = "torch",
        groups: int = 1,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """A new tensor of ``shape`` (``dtype`` float32 unless given) filled by this scheme."""
        import torch

        chosen = dtype if dtype is not None else torch.float32
        tensor = torch.empty(tuple(shape), dtype=chosen, device=device)
        return self.fill_(tensor, generator, layout=layout, groups=groups)

    # --- what a subclass implements ----------------------------------------------------------
    def _check(self, weight: Weight) -> None:  # noqa: B027  (a hook: by default any weight)
        """Raise :class:`~initlab.errors.ShapeError` for a weight this scheme cannot fill."""

    @abstractmethod
    def _stats(self, weight: Weight) -> ValueStats:
        """:meth:`stats` for an accepted ``weight``."""

    @abstractmethod
    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        """:meth:`fill_` for an accepted ``weight`` (``tensor``'s), called under ``no_grad``."""

    @abstractmethod
    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        """:meth:`array` for an accepted ``weight``, drawn with ``rng``."""

    # --- serialization -----------------------------------------------------------------------
    @classmethod
    def canonical_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` as the constructor takes them, other libraries' spellings translated.

        :func:`get` and :func:`from_config` call it, so a config written for Keras or JAX reads
        as it means; the default translates nothing.
        """
        return dict(params)

    def params(self) -> dict[str, Any]:
        """The scheme's parameters, as passed to its constructor."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def to_config(self) -> dict[str, Any]:
        """``{"scheme": name, **params}``; :func:`from_config` inverts it."""
        return {"scheme": self.name, **self.params()}

    def __str__(self) -> str:
        """``name(param=value, ...)`` with the parameters that differ from their defaults."""
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.init}
        changed = {k: v for k, v in self.params().items() if defaults.get(k) != v}
        inner = ", ".join(
            f"{key}={value:.6g}" if isinstance(value, float) else f"{key}={value!r}"
            for key, value in changed.items()
        )
        return f"{self.name}({inner})"


@dataclasses.dataclass(frozen=True)
class ElementwiseLaw(Scheme):
    """A scheme whose elements are i.i.d. draws from one fixed law, whatever the weight's fans.

    Constant, uniform, normal and truncated normal: the laws into which every scheme that
    fills a tensor element by element resolves (see :meth:`Scheme.law`).
    """

    def law(
        self,
        fans: Fans | Sequence[int] | None = None,
        *,
        layout: Layout = "torch",
        groups: int = 1,
    ) -> ElementwiseLaw:
        return self


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register(*aliases: str) -> Any:
    """Class decorator: add a scheme to the registry under its ``name`` and ``aliases``."""

    def decorate(cls: SchemeT) -> SchemeT:
        _REGISTRY[cls.name] = cls
        for alias in aliases:
            _ALIASES[_key(alias)] = cls.name
        return cls

    return decorate


def scheme_names(*, aliases: bool = False) -> list[str]:
    """Registered scheme names (sorted), optionally with their aliases."""
    names = set(_REGISTRY)
    if aliases:
        names |= set(_ALIASES)
    return sorted(names)


def scheme_aliases(name: str) -> list[str]:
    """The aliases under which the scheme ``name`` is also registered."""
    return sorted(alias for alias, target in _ALIASES.items() if target == name)


def scheme_class(name: str) -> type[Scheme]:
    """The class registered under ``name`` or an alias (case-insensitive)."""
    key = _key(str(name))
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownNameError(did_you_mean("scheme", str(name), scheme_names(aliases=True)))
    return _REGISTRY[key]


def get(name: str | Scheme, **params: Any) -> Scheme:
    """The scheme called ``name`` with ``params``.

    Example:
        >>> get("he_normal", mode="fan_out")
        HeNormal(a=0.0, mode='fan_out', nonlinearity='leaky_relu', distribution='normal')

    Raises:
        UnknownNameError: an unknown name (with the closest known names).
        ConfigError: a parameter the scheme does not take, or a value out of range.
    """
    if isinstance(name, Scheme):
        return dataclasses.replace(name, **name.canonical_params(params)) if params else name
    cls = scheme_class(name)
    params = cls.canonical_params(params)
    accepted = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"Scheme {cls.name!r} has no parameter {unknown[0]!r}. "
            f"It takes: {', '.join(accepted) or 'no parameters'}."
        )
    return cls(**params)


def from_config(config: Mapping[str, Any]) -> Scheme:
    """Inverse of :meth:`Scheme.to_config`: ``{"scheme": "he_normal", "mode": "fan_out"}``."""
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"A scheme config must be a mapping such as {{'scheme': 'he_normal'}}, got "
            f"{config!r} ({type(config).__name__}); for a name alone use initlab.get(name)."
        )
    if "scheme" not in config:
        raise ConfigError(
            f"A scheme config needs a 'scheme' key naming the scheme, got keys {sorted(config)}."
        )
    params = {key: value for key, value in config.items() if key != "scheme"}
    return get(str(config["scheme"]), **params)


# --- validation helpers used by the scheme classes ----------------------------------------------
def check_finite(scheme: str, field: str, value: float) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{scheme}: {field} must be a finite number, got {value!r}.")


def check_positive(scheme: str, field: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is finite and > 0 (or >= 0)."""
    check_finite(scheme, field, value)
    if value < 0 or (value == 0 and not allow_zero):
        relation = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{scheme}: {field} must be {relation}, got {value!r}.")


def check_choice(scheme: str, field: str, value: str, choices: Sequence[str]) -> None:
    """Raise :class:`UnknownNameError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise UnknownNameError(f"{scheme}: " + did_you_mean(field, str(value), choices))
