r"""Every initlab scheme as a Keras 3 initializer (``pip install 'initlab[keras]'``).

.. code-block:: python

    import keras
    from initlab.integrations.keras import HeNormal, initializer

    layer = keras.layers.Dense(256, kernel_initializer=HeNormal(mode="fan_out", seed=0))
    conv = keras.layers.Conv2D(32, 3, kernel_initializer=initializer("glorot_uniform", seed=1))
    same = keras.initializers.get("initlab>he_normal")  # by registered name, like "he_normal"

Three ways to name a scheme: a class per scheme (:class:`HeNormal`, :class:`XavierUniform`,
...), the snake_case factory :func:`initializer` (any scheme name or alias, e.g.
``"glorot_uniform"``, ``"kaiming_normal"``), and the generic :class:`InitlabInitializer`, which
takes any registered scheme, a :class:`~initlab.schemes.Scheme` or a scheme config. Each is
registered with Keras' serialization under the package ``initlab``: the class names
(``"initlab>HeNormal"``) and the scheme names and aliases (``"initlab>he_normal"``) work as
identifiers, and a model using them round-trips through ``model.to_json()`` /
``keras.models.model_from_json`` and ``model.save("m.keras")`` / ``keras.models.load_model``
(import this module before loading, as for any custom Keras object).

Fans follow Keras' kernel layout ``(*kernel, in, out)``: a ``Dense`` kernel is ``(in, out)``, a
``Conv2D`` kernel ``(kh, kw, in / groups, out)``, so

.. math::

    \text{fan\_in} = rf \cdot c_{in}, \qquad \text{fan\_out} = rf \cdot c_{out} / \text{groups}

(``layout="keras_depthwise"`` for a ``DepthwiseConv2D`` kernel: fan_in is ``rf``). Values are
drawn with NumPy (the schemes' :meth:`~initlab.schemes.Scheme.array`) and converted to a tensor
of the active backend, so any backend works.

Seeds. A Keras 3 initializer seeded with an int, or unseeded, returns the *same* values on every
call, so one instance shared by two layers gives both the same weights. initlab does not: call
``k`` of an initializer draws from ``numpy.random.default_rng([seed, k])``, so

* ``seed=None`` (default): a seed is drawn at construction from Python's ``random`` (as Keras'
  own default seed, so ``keras.utils.set_random_seed`` makes it reproducible); every call gives
  fresh values;
* ``seed=s``: every call gives fresh values, and the sequence is the same in every run (the
  behaviour of a Keras initializer seeded with a ``keras.random.SeedGenerator``);
* ``repeat=True``: every call is call 0, so every call returns the same values for the same
  shape; ask for this when two layers must start identical (Keras' int-seed behaviour).

The call counter is not part of the config: a deserialized initializer starts at call 0. A
model whose layers each have their own seeded initializer therefore gets the same initial
weights when rebuilt from its JSON; layers that *shared* one instance get one copy each after
deserialization, so their call counters restart independently.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from initlab.errors import ConfigError
from initlab.optional import MissingDependencyError, require
from initlab.schemes import Scheme, from_config, get, scheme_aliases, scheme_class

__all__ = [
    "Constant",
    "DeltaOrthogonal",
    "Dirac",
    "HeNormal",
    "HeUniform",
    "Identity",
    "InitlabInitializer",
    "KerasLayout",
    "LeCunNormal",
    "LeCunUniform",
    "Normal",
    "Ones",
    "Orthogonal",
    "Sparse",
    "TruncatedNormal",
    "Uniform",
    "VarianceScaling",
    "XavierNormal",
    "XavierUniform",
    "Zeros",
    "initializer",
]

FEATURE = "initlab.integrations.keras"
PACKAGE = "initlab"

KerasLayout = Literal["keras", "keras_depthwise"]
KERAS_LAYOUTS: tuple[str, ...] = get_args(KerasLayout)


def _import_keras() -> Any:
    try:
        return require("keras", FEATURE)
    except MissingDependencyError:
        try:
            installed = importlib.util.find_spec("keras") is not None
        except ValueError:  # sys.modules["keras"] is None: treated as not installed
            installed = False
        if not installed:
            raise
        # Keras 3 imports its backend when imported; TensorFlow is the default backend.
        raise MissingDependencyError(
            f"{FEATURE}: keras is installed but failed to import, usually because its backend "
            "is missing (Keras defaults to TensorFlow). Set KERAS_BACKEND=torch before "
            "importing keras, or install the backend keras.json names."
        ) from None


keras = _import_keras()
_KerasInitializer: Any = keras.initializers.Initializer


def _default_seed() -> int:
    # Keras' make_default_seed: Python's random, which keras.utils.set_random_seed seeds.
    return random.randint(1, 10**9)


def _scheme_fields(scheme: Scheme) -> set[str]:
    return {f.name for f in dataclasses.fields(scheme) if f.init}


@dataclasses.dataclass(frozen=True)
class _SchemeAndGroups:
    """An initializer's scheme and the layer's groups its fans (and the scheme) read.

    Attributes:
        scheme: the scheme, with its parameters.
        groups: the layer's groups.
    """

    scheme: Scheme
    groups: int


def _resolve_scheme(
    scheme: str | Scheme | Mapping[str, Any], params: dict[str, Any], groups: int | None
) -> _SchemeAndGroups:
    """The scheme with ``params`` and the layer's groups (shared with a scheme's own groups)."""
    if isinstance(scheme, Mapping):
        resolved = from_config({**scheme, **params})
    elif isinstance(scheme, Scheme | str):
        resolved = get(scheme, **params)
    else:
        raise ConfigError(
            f"{FEATURE}: scheme must be a scheme name, a Scheme or a scheme config, got "
            f"{type(scheme).__name__} {scheme!r}. Known names: initlab.scheme_names()."
        )
    if "groups" not in _scheme_fields(resolved):
        return _SchemeAndGroups(resolved, 1 if groups is None else groups)
    # Schemes that take the layer's groups (dirac) read the same number the fans read.
    own = int(resolved.groups)  # type: ignore[attr-defined]
    if groups is None or groups == own:
        return _SchemeAndGroups(resolved, own)
    return _SchemeAndGroups(
        dataclasses.replace(resolved, groups=groups),  # type: ignore[call-arg]
        groups,
    )


def _check_options(seed: Any, repeat: Any, layout: Any, groups: int) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError(
            f"{FEATURE}: seed must be a non-negative int or None, got {seed!r}. "
            "A keras.random.SeedGenerator is not needed: an int seed already gives fresh, "
            "reproducible values on every call (repeat=True for identical values)."
        )
    if not isinstance(repeat, bool):
        raise ConfigError(f"{FEATURE}: repeat must be True or False, got {repeat!r}.")
    if layout not in KERAS_LAYOUTS:
        raise ConfigError(
            f"{FEATURE}: layout must be one of {', '.join(KERAS_LAYOUTS)}, got {layout!r}. "
            "Keras kernels are (*kernel, in, out); use 'keras_depthwise' for DepthwiseConv."
        )
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ConfigError(f"{FEATURE}: groups must be a positive int, got {groups!r}.")


class InitlabInitializer(_KerasInitializer):  # type: ignore[misc]
    r"""Any initlab scheme as a ``keras.initializers.Initializer``.

    Calling it with a shape returns a backend tensor drawn from the scheme for a Keras kernel of
    that shape; call ``k`` (counted per instance) draws from
    ``numpy.random.default_rng([seed, k])`` (see the module docstring for the seed rules).

    Args:
        scheme: a scheme name or alias (``"he_normal"``), a :class:`~initlab.schemes.Scheme`, or
            a scheme config (``{"scheme": "he_normal", "mode": "fan_out"}``).
        seed: a non-negative int for a reproducible sequence of draws; ``None`` draws one at
            construction.
        repeat: return the same values on every call (identical weights for layers sharing the
            initializer) instead of fresh ones.
        layout: ``"keras"`` ``(*kernel, in, out)`` or ``"keras_depthwise"``.
        groups: the layer's ``groups``, for the fans (and for schemes that take ``groups``,
            such as ``dirac``); ``None`` means the scheme's own, else 1.
        **params: the scheme's parameters (``mode="fan_out"``).

    Raises:
        UnknownNameError: an unknown scheme name (with the closest known names).
        ConfigError: a parameter the scheme does not take, or a bad seed/layout/groups.

    Example:
        >>> init = InitlabInitializer("he_normal", mode="fan_out", seed=0)
        >>> tuple(init((3, 3, 16, 32)).shape)
        (3, 3, 16, 32)
    """

    scheme_name: ClassVar[str | None] = None

    def __init__(
        self,
        scheme: str | Scheme | Mapping[str, Any] = "variance_scaling",
        *,
        seed: int | None = None,
        repeat: bool = False,
        layout: KerasLayout = "keras",
        groups: int | None = None,
        **params: Any,
    ) -> None:
        resolved = _resolve_scheme(scheme, dict(params), groups)
        self.scheme, self.groups = resolved.scheme, resolved.groups
        _check_options(seed, repeat, layout, self.groups)
        self.seed = seed
        self.repeat = repeat
        self.layout: KerasLayout = layout
        self._base_seed = seed if seed is not None else _default_seed()
        self._calls = 0

    def rng(self) -> np.random.Generator:
        """The Generator of the next call (advances the call counter unless ``repeat``)."""
        call = 0 if self.repeat else self._calls
        if not self.repeat:
            self._calls += 1
        return np.random.default_rng([self._base_seed, call])

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        """A backend tensor of ``shape`` and ``dtype`` (Keras' ``floatx()`` when ``None``)."""
        values = self.scheme.array(
            tuple(int(size) for size in shape), self.rng(), layout=self.layout, groups=self.groups
        )
        return keras.ops.convert_to_tensor(values, dtype=keras.backend.standardize_dtype(dtype))

    def get_config(self) -> dict[str, Any]:
        """The scheme's config plus ``seed``, ``repeat``, ``layout`` and ``groups``."""
        options = {
            "seed": self.seed,
            "repeat": self.repeat,
            "layout": self.layout,
            "groups": self.groups,
        }
        return {**self.scheme.to_config(), **options}

    def __repr__(self) -> str:
        seed = "" if self.seed is None else f", seed={self.seed}"
        repeat = ", repeat=True" if self.repeat else ""
        return f"{type(self).__name__}({self.scheme}{seed}{repeat})"


_NAMED: dict[str, type[_NamedInitializer]] = {}


class _NamedInitializer(InitlabInitializer):
    """One scheme, fixed by the class: the Keras-style ``HeNormal(mode=..., seed=...)``.

    A subclass names its scheme as a class keyword, ``class HeNormal(_NamedInitializer,
    scheme="he_normal")``, and is thereby the class :func:`initializer` returns for that scheme.
    """

    def __init_subclass__(cls, *, scheme: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if scheme is not None:  # a user's subclass of HeNormal keeps he_normal, unregistered
            cls.scheme_name = scheme
            _NAMED[scheme] = cls

    def __init__(
        self,
        *,
        seed: int | None = None,
        repeat: bool = False,
        layout: KerasLayout = "keras",
        groups: int | None = None,
        **params: Any,
    ) -> None:
        super().__init__(
            str(self.scheme_name), seed=seed, repeat=repeat, layout=layout, groups=groups, **params
        )

    def get_config(self) -> dict[str, Any]:
        """As :meth:`InitlabInitializer.get_config`, without ``scheme`` (the class names it)."""
        config = super().get_config()
        del config["scheme"]
        return config


class Zeros(_NamedInitializer, scheme="zeros"):
    """All zeros (:class:`initlab.schemes.Zeros`)."""


class Ones(_NamedInitializer, scheme="ones"):
    """All ones (:class:`initlab.schemes.Ones`)."""


class Constant(_NamedInitializer, scheme="constant"):
    """Every value ``value`` (:class:`initlab.schemes.Constant`)."""


class Uniform(_NamedInitializer, scheme="uniform"):
    r""":math:`U(a, b)` (:class:`initlab.schemes.Uniform`)."""


class Normal(_NamedInitializer, scheme="normal"):
    r""":math:`\mathcal N(\text{mean}, \text{std}^2)` (:class:`initlab.schemes.Normal`)."""


class TruncatedNormal(_NamedInitializer, scheme="truncated_normal"):
    """A normal truncated to ``[a, b]`` (:class:`initlab.schemes.TruncatedNormal`)."""


class VarianceScaling(_NamedInitializer, scheme="variance_scaling"):
    r"""Variance ``scale / n(mode)`` (:class:`initlab.schemes.VarianceScaling`)."""


class XavierUniform(_NamedInitializer, scheme="xavier_uniform"):
    r"""Glorot & Bengio (2010): :math:`U(\pm g\sqrt{6/(\text{fan\_in}+\text{fan\_out})})`."""


class XavierNormal(_NamedInitializer, scheme="xavier_normal"):
    r"""Glorot & Bengio (2010): std :math:`g\sqrt{2/(\text{fan\_in}+\text{fan\_out})}`."""


class HeUniform(_NamedInitializer, scheme="he_uniform"):
    r"""He et al. (2015): :math:`U(\pm g\sqrt{3/n})`, ``g`` from ``nonlinearity``."""


class HeNormal(_NamedInitializer, scheme="he_normal"):
    r"""He et al. (2015): std :math:`g/\sqrt n` (:math:`\sqrt{2/\text{fan\_in}}` for ReLU)."""


class LeCunUniform(_NamedInitializer, scheme="lecun_uniform"):
    r"""LeCun et al. (1998): :math:`U(\pm\sqrt{3/\text{fan\_in}})`."""


class LeCunNormal(_NamedInitializer, scheme="lecun_normal"):
    r"""LeCun et al. (1998): std :math:`1/\sqrt{\text{fan\_in}}`."""


class Orthogonal(_NamedInitializer, scheme="orthogonal"):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al., 2014)."""


class Identity(_NamedInitializer, scheme="identity"):
    """``gain`` on the diagonal of a 2-D kernel (:class:`initlab.schemes.Identity`)."""


class Dirac(_NamedInitializer, scheme="dirac"):
    """Identity convolution through the centre tap (:class:`initlab.schemes.Dirac`)."""


class DeltaOrthogonal(_NamedInitializer, scheme="delta_orthogonal"):
    """Orthogonal centre tap, zeros elsewhere (Xiao et al., 2018)."""


class Sparse(_NamedInitializer, scheme="sparse"):
    """Martens (2010): a normal with ``sparsity`` zeros per column."""


def initializer(
    scheme: str | Scheme,
    *,
    seed: int | None = None,
    repeat: bool = False,
    layout: KerasLayout = "keras",
    groups: int | None = None,
    **params: Any,
) -> InitlabInitializer:
    """The Keras initializer for the scheme named ``scheme`` (any name or alias), snake_case.

    Returns the scheme's own class (``initializer("glorot_uniform")`` is an
    :class:`XavierUniform`) or, for a scheme without one, an :class:`InitlabInitializer`.
    The arguments are those of :class:`InitlabInitializer`.

    Example:
        >>> initializer("kaiming_normal", mode="fan_out", seed=0)
        HeNormal(he_normal(mode='fan_out'), seed=0)
    """
    if isinstance(scheme, Scheme):
        params = {**scheme.params(), **params}
        if "groups" in params:  # a scheme's own groups is the layer's (dirac)
            own = params.pop("groups")
            groups = own if groups is None else groups
        name = scheme.name
    else:
        name = scheme_class(scheme).name
    options: dict[str, Any] = {"seed": seed, "repeat": repeat, "layout": layout, "groups": groups}
    named = _NAMED.get(name)
    if named is not None:
        return named(**options, **params)
    return InitlabInitializer(name, **options, **params)


def _register() -> None:
    """Register every class with Keras, plus the snake_case scheme names and aliases."""
    register = keras.saving.register_keras_serializable
    register(package=PACKAGE, name=InitlabInitializer.__name__)(InitlabInitializer)
    custom_objects = keras.saving.get_custom_objects()
    for name, cls in _NAMED.items():
        register(package=PACKAGE, name=cls.__name__)(cls)
        for alias in (name, *scheme_aliases(name)):
            custom_objects[f"{PACKAGE}>{alias}"] = cls


_register()
