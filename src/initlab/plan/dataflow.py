"""What one call does to a layer's output on its way to the next nonlinearity.

Activation detection sees a forward pass in two ways (a ``torch.fx`` graph, and a recorded run
on an example); both ask the same three questions of every call that a layer's output reaches:
is it an activation (``F.relu``, ``torch.tanh``, ``x.sigmoid()``, ``F.gelu(approximate=...)``),
does it pass the data on unchanged in kind (shape-only steps, casts, dropout, residual sums,
norms, pooling, scaling by a constant), or does the path end there (a product of two signals,
attention, a reduction)?
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from initlab.gains import find_activation

# The functional form takes the parameter under the name its module stores it (layers.kinds).
from initlab.layers import ACTIVATION_PARAMETERS, ModuleActivation, is_norm, module_activation

__all__ = [
    "PASS_THROUGH_CALLS",
    "PASS_THROUGH_MODULES",
    "Roles",
    "call_activation",
    "call_name",
    "is_leaf_layer",
    "layer_names",
    "passes_through",
]

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
        *(
            f"{kind}_pool{d}d"
            for kind in ("max", "avg", "adaptive_avg", "adaptive_max")
            for d in "123"
        ),
        *(f"max_pool{d}d_with_indices" for d in "123"),
        *("lp_pool1d", "lp_pool2d"),
    }
)
# A product or quotient passes the data on when it scales one signal by constants; the product
# of two signals (a gate, attention) ends the path: it is not the activation of either.
_SCALING_CALLS = frozenset({"mul", "rmul", "imul", "div", "truediv", "itruediv"})

# Modules that hand their input on; norms are recognised with initlab.layers.is_norm.
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


def layer_names(model: nn.Module) -> list[str]:
    """Modules that own a weight matrix or kernel directly (the layers an activation follows).

    A reparametrized layer (``weight_norm``, ``spectral_norm``) counts as itself: the originals
    its weight is computed from sit in ``module.parametrizations``, which is not a layer.
    """
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding | nn.EmbeddingBag | parametrize.ParametrizationList):
            continue
        # Read from the module's own dicts: parameters(recurse=False) and a missing attribute
        # through Module.__getattr__ cost microseconds per module, on every probe and plan.
        own: Iterable[nn.Parameter] = (p for p in module._parameters.values() if p is not None)
        parametrizations = module._modules.get("parametrizations")
        if isinstance(parametrizations, nn.ModuleDict):  # what parametrize.is_parametrized reads
            own = itertools.chain(own, parametrizations.parameters())
        if any(p.dim() >= 2 for p in own):
            names.append(name)
    return names


def is_leaf_layer(module: nn.Module) -> bool:
    """A layer with no submodules but its parametrizations (``nn.Linear``, GPT-2's ``Conv1D``,
    a ``weight_norm``-ed conv); ``nn.MultiheadAttention`` and Mamba's mixer are not."""
    return all(name == "parametrizations" for name, _ in module.named_children())


# Module classes seen not to be activations: whether a module is one depends on its class
# alone, and the miss is slow to find (it builds a did-you-mean message).
_NOT_ACTIVATIONS: set[type[nn.Module]] = set()


@dataclass(frozen=True)
class Roles:
    """What each module of one model is to activation detection, worked out once per model
    (recognising a norm by behaviour runs it on a probe).

    Attributes:
        layers: the layers' qualified names (:func:`layer_names`).
        activations: ``(canonical name, parameter)`` of each activation module, by ``id``.
        pass_through: the ``id`` of each module that hands its input on unchanged in kind: a
            normalization module (:func:`initlab.layers.is_norm`) or an identity "activation"
            (``nn.Identity``, Hugging Face's ``LinearActivation``: a ResNet block's last conv
            is followed by its ``Identity``, then by the ReLU after the residual sum).
    """

    layers: list[str]
    activations: dict[int, ModuleActivation]
    pass_through: frozenset[int]

    @classmethod
    def of(cls, model: nn.Module) -> Roles:
        """The roles of ``model``'s modules."""
        activations: dict[int, ModuleActivation] = {}
        pass_through: set[int] = set()
        for module in model.modules():
            found = None if type(module) in _NOT_ACTIVATIONS else module_activation(module)
            if found is None:
                _NOT_ACTIVATIONS.add(type(module))
            if found is not None and found.name != "linear":
                activations[id(module)] = found
            elif found is not None or is_norm(module):
                pass_through.add(id(module))
        return cls(layer_names(model), activations, frozenset(pass_through))

    def activation(self, module: nn.Module) -> ModuleActivation | None:
        """The activation ``module`` computes, ``None`` when it is no activation module."""
        return self.activations.get(id(module))

    def passes_through(self, module: nn.Module) -> bool:
        """Dropout, identity, flatten, pooling and normalization modules."""
        return isinstance(module, PASS_THROUGH_MODULES) or id(module) in self.pass_through


def _argument(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def call_activation(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> ModuleActivation | None:
    """The activation the call named ``name`` applies, ``None`` when it is no activation.

    The parameter is read from the call: leaky_relu's slope, elu/celu's alpha, softplus's beta,
    rrelu's mean slope, prelu's mean learned slope (when the weight is a tensor, not an fx node).
    """
    if name == "gelu" and kwargs.get("approximate") == "tanh":
        return ModuleActivation("gelu_tanh", None)
    canonical = find_activation(name)
    if canonical is None or canonical == "linear":
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
    elif canonical in ACTIVATION_PARAMETERS:
        param = _argument(args, kwargs, 1, ACTIVATION_PARAMETERS[canonical])
    is_number = isinstance(param, int | float) and not isinstance(param, bool)
    return ModuleActivation(canonical, float(param) if is_number else None)


def passes_through(name: str, signals: int) -> bool:
    """Whether the call named ``name`` hands a layer's output on unchanged in kind.

    Args:
        name: as :func:`call_name` gives it.
        signals: how many of its operands are tensors (or graph nodes); a product or quotient
            passes the data on only as a scaling of one signal.
    """
    return name in PASS_THROUGH_CALLS or (name in _SCALING_CALLS and signals == 1)
