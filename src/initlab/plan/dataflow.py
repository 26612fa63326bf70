"""What one call does to a layer's output on its way to the next nonlinearity.

Activation detection sees a forward pass in two ways (a ``torch.fx`` graph, and a recorded run
on an example); both ask the same three questions of every call that a layer's output reaches:
is it an activation (``F.relu``, ``torch.tanh``, ``x.sigmoid()``, ``F.gelu(approximate=...)``),
does it pass the data on unchanged in kind (shape-only steps, casts, dropout, residual sums,
norms, pooling, scaling by a constant), or does the path end there (a product of two signals,
attention, a reduction)?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.gains import canonical_activation
from initlab.layers import is_norm

# The functional form takes the parameter under the name its module stores it (layers.kinds).
from initlab.layers.kinds import _PARAMETER_ATTRIBUTES

__all__ = [
    "PASS_THROUGH_CALLS",
    "PASS_THROUGH_MODULES",
    "call_activation",
    "call_name",
    "passes_through",
    "passes_through_module",
]

Found = tuple[str, float | None]

# Names as call_name() gives them: dunders and in-place underscores stripped.
PASS_THROUGH_CALLS: frozenset[str] = frozenset(
    {
        # shape only
        *("view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze"),
        *("unsqueeze", "permute", "transpose", "t", "T", "mT", "movedim", "moveaxis"),
        *("swapaxes", "swapdims", "expand", "expand_as", "repeat", "repeat_interleave"),
        *("contiguous", "getitem", "narrow", "select", "chunk", "split", "split_with_sizes"),
        *("tensor_split", "unbind", "cat", "concat", "concatenate", "stack", "pad"),
        # copies and casts
        *("to", "type", "type_as", "float", "double", "half", "bfloat16", "clone", "detach"),
        # dropout
        *("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout"),
        "feature_alpha_dropout",
        # sums (residual connections)
        *("add", "iadd", "radd", "sub", "isub", "rsub", "neg"),
        # normalization
        *("batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm", "normalize"),
        "local_response_norm",
        # pooling
        *(f"{kind}_pool{d}d" for kind in ("max", "avg", "adaptive_avg", "adaptive_max") for d in "123"),
        *(f"max_pool{d}d_with_indices" for d in "123"),
        *("lp_pool1d", "lp_pool2d"),
    }
)
# A product or quotient passes the data on when it scales one signal by constants; the product
# of two signals (a gate, attention) ends the path: it is not the activation of either.
_SCALING_CALLS = frozenset({"mul", "rmul", "imul", "div", "truediv", "itruediv"})

PASS_THROUGH_MODULES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


def call_name(target: Any) -> str:
    """The name of a called function, method or operator: ``F.relu`` -> ``"relu"``,
    ``Tensor.__getitem__`` -> ``"getitem"``, ``"relu_"`` -> ``"relu"``, ``x.mT`` -> ``"mT"``."""
    if isinstance(target, str):
        return target.strip("_")
    name = str(getattr(target, "__name__", ""))
    if name == "__get__":  # a Tensor property (x.T, x.mT): name the property
        name = str(getattr(getattr(target, "__self__", None), "__name__", ""))
    return name.strip("_")


def _argument(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def call_activation(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Found | None:
    """``(canonical activation, parameter)`` when the call named ``name`` is an activation.

    The parameter is read from the call: leaky_relu's slope, elu/celu's alpha, softplus's beta,
    rrelu's mean slope, prelu's mean learned slope (when the weight is a tensor, not an fx node).
    """
    if name == "gelu" and kwargs.get("approximate") == "tanh":
        return "gelu_tanh", None
    try:
        canonical = canonical_activation(name)
    except InitlabError:
        return None
    if canonical == "linear":
        return None
    param: Any = None
    if name == "prelu":
        weight = _argument(args, kwargs, 1, "weight")
        param = float(weight.detach().float().mean()) if isinstance(weight, torch.Tensor) else None
    elif name == "rrelu":
        lower = _argument(args, kwargs, 1, "lower")
        upper = _argument(args, kwargs, 2, "upper")
        lower = 1.0 / 8.0 if lower is None else lower
        upper = 1.0 / 3.0 if upper is None else upper
        if isinstance(lower, int | float) and isinstance(upper, int | float):
            param = (lower + upper) / 2.0
    elif canonical in _PARAMETER_ATTRIBUTES:
        param = _argument(args, kwargs, 1, _PARAMETER_ATTRIBUTES[canonical])
    is_number = isinstance(param, int | float) and not isinstance(param, bool)
    return canonical, float(param) if is_number else None


def passes_through(name: str, signals: int) -> bool:
    """Whether the call named ``name`` hands a layer's output on unchanged in kind.

    Args:
        name: as :func:`call_name` gives it.
        signals: how many of its operands are tensors (or graph nodes); a product or quotient
            passes the data on only as a scaling of one signal.
    """
    return name in PASS_THROUGH_CALLS or (name in _SCALING_CALLS and signals == 1)


def passes_through_module(module: nn.Module) -> bool:
    """Dropout, identity, flatten, pooling and normalization modules (:func:`is_norm`)."""
    return isinstance(module, PASS_THROUGH_MODULES) or is_norm(module)
