"""`Scheme`: one frozen, serializable description of how to initialize a tensor.

A scheme is a value (name + parameters), never a function with hidden state. It reports the
statistics it implies for a shape (:meth:`Scheme.std`, :meth:`Scheme.bound`), fills a torch tensor
in place (:meth:`Scheme.fill_`) or builds a NumPy array (:meth:`Scheme.array`), and round-trips
through ``to_config()`` / :func:`from_config`. Schemes are found by name with :func:`get`.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch

from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.fans import Fans, Layout, compute_fans

if TYPE_CHECKING:
    from initlab.schemes.elementwise import ElementwiseLaw

__all__ = [
    "Scheme",
    "ValueStats",
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
class Scheme(ABC):
    """Base of every initialization scheme.

    Subclasses are frozen dataclasses whose fields are the scheme's parameters; they set the
    class variables :attr:`name` (registry name) and :attr:`formula` (one line of math for
    listings) and implement :meth:`std`, :meth:`fill_` and :meth:`array`.
    """

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    uses_fans: ClassVar[bool] = False

    # --- what the scheme implies -------------------------------------------------------------
    @abstractmethod
    def stats(
        self, shape: Sequence[int], *, layout: Layout = "torch", groups: int = 1
    ) -> ValueStats:
        """Mean, std and hard bound of the values this scheme gives a tensor of ``shape``."""

    def fans(self, shape: Sequence[int], *, layout: Layout = "torch", groups: int = 1) -> Fans:
        """The fans this scheme reads for ``shape`` (see :func:`initlab.fans.compute_fans`)."""
        return compute_fans(shape, layout=layout, groups=groups)

    def law_for(self, fans: Fans | None) -> ElementwiseLaw | None:
        """The law every element is drawn from, i.i.d., for a weight of ``fans``.

        A constant, uniform or normal scheme is its own law; a variance-scaling scheme gives
        the uniform or normal law of its std for ``fans``. ``None`` when the scheme builds the
        tensor as a whole (orthogonal, identity, dirac, delta-orthogonal, sparse, a checkpoint)
        or reads fans it was not given: such a tensor cannot be filled element by element.
        """
        return None

    # --- sampling ----------------------------------------------------------------------------
    @abstractmethod
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

    @abstractmethod
    def array(
        self,
        shape: Sequence[int],
        rng: np.random.Generator | None = None,
        *,
        layout: Layout = "keras",
        groups: int = 1,
        dtype: Any = np.float64,
    ) -> np.ndarray[Any, Any]:
        """A NumPy array of ``shape`` drawn with ``rng`` (``layout`` defaults to ``(in, out)``)."""

    def sample(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        *,
        layout: Layout = "torch",
        groups: int = 1,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """A new tensor of ``shape`` filled by this scheme."""
        tensor = torch.empty(tuple(shape), dtype=dtype, device=device)
        return self.fill_(tensor, generator, layout=layout, groups=groups)

    # --- serialization -----------------------------------------------------------------------
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
        return dataclasses.replace(name, **params) if params else name
    cls = scheme_class(name)
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
