"""Build a model from an import path the user typed: ``"package.module:make_model"``.

Only the module named in the spec is imported (with whatever it imports itself), and only the
attribute named is called, with the keyword arguments given. Every failure is a
:class:`~initlab.errors.ConfigError` that names the spec and says what to fix.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from torch import nn

from initlab.errors import ConfigError

__all__ = ["FactorySpec", "load_factory", "parse_factory_spec"]

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_SPEC = re.compile(rf"(?P<module>{_DOTTED}):(?P<attribute>{_DOTTED})")


class FactorySpec(NamedTuple):
    """A ``MODULE:FACTORY`` import path, split.

    Attributes:
        module: the module to import (``pkg.mod``).
        attribute: the dotted path of the factory in it (``Outer.make``).
    """

    module: str
    attribute: str


def parse_factory_spec(spec: str) -> FactorySpec:
    """``"pkg.mod:Outer.make"`` -> ``FactorySpec("pkg.mod", "Outer.make")``.

    Raises:
        ConfigError: the spec is not ``MODULE:FACTORY`` with dotted Python names.
    """
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise ConfigError(
            f"MODULE:FACTORY must be an import path such as 'mypackage.models:make_model' "
            f"(a module, a colon, a function or class in it), got {spec!r}."
        )
    return FactorySpec(match.group("module"), match.group("attribute"))


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(
                f"{spec}: cannot import module {module_name!r} (no module named {missing!r}). "
                "Run from the directory that holds it, add it to PYTHONPATH, or install it."
            ) from None
        raise ConfigError(
            f"{spec}: importing module {module_name!r} failed: it needs {missing!r}, "
            "which is not installed."
        ) from None
    except Exception as error:  # the user's module raised while importing (any kind)
        raise ConfigError(
            f"{spec}: importing module {module_name!r} failed: "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


def _resolve(module: Any, attribute: str, spec: str) -> Any:
    target = module
    walked: list[str] = []
    for part in attribute.split("."):
        if not hasattr(target, part):
            owner = ".".join([module.__name__, *walked])
            known = [
                n for n in dir(target) if not n.startswith("_") and callable(getattr(target, n))
            ]
            raise ConfigError(
                f"{spec}: {owner!r} has no attribute {part!r}. " + _known(part, known)
            )
        target = getattr(target, part)
        walked.append(part)
    return target


def _known(name: str, known: list[str]) -> str:
    if not known:
        return "It defines no public function or class."
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    return f"{hint}Callables in it: {', '.join(sorted(known))}."


def load_factory(spec: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Import ``MODULE``, call ``FACTORY(**kwargs)`` and return the ``nn.Module`` it builds.

    Example:
        >>> load_factory("torchvision.models:resnet18", {"num_classes": 10})

    Args:
        spec: ``"package.module:function"`` or ``"package.module:Class"`` (dotted attributes
            such as ``"module:Models.small"`` are followed).
        kwargs: keyword arguments for the factory.

    Raises:
        ConfigError: a malformed spec, a module that does not import, a missing attribute, a
            factory that raises (its exception is named), or a result that is not a module.
    """
    module_name, attribute = parse_factory_spec(spec)
    module = _import(module_name, spec)
    factory = _resolve(module, attribute, spec)
    if not callable(factory):
        raise ConfigError(
            f"{spec}: {attribute!r} is a {type(factory).__name__}, not a function or class "
            "that builds a model."
        )
    try:
        model = factory(**dict(kwargs or {}))
    except Exception as error:  # the user's factory can raise anything; report it in one line
        raise ConfigError(
            f"{spec}: the factory raised {type(error).__name__}: {_first_line(error)}"
            + (f" (called with {dict(kwargs)})" if kwargs else "")
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"{spec}: the factory returned a {type(model).__name__}, not a torch.nn.Module. "
            "Point MODULE:FACTORY at a function or class that builds the model."
        )
    return model
