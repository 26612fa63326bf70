r"""Schemes that build a whole matrix rather than i.i.d. elements.

``orthogonal`` (Saxe et al., 2014), ``identity`` (eye), ``dirac`` (identity convolution),
``delta_orthogonal`` (Xiao et al., 2018) and ``sparse`` (Martens, 2010). They need the full
tensor at once; their torch and NumPy samplers follow the same steps.

Structural layouts: ``dirac``, ``delta_orthogonal`` and ``sparse`` work on the *torch order*
``(out, in, *kernel)``; a tensor in another layout is viewed in that order (a permutation), so
``keras`` kernels ``(*kernel, in, out)`` get the same identity/orthogonal structure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from initlab.errors import ConfigError, ShapeError
from initlab.fans import Layout
from initlab.schemes.base import (
    Scheme,
    ValueStats,
    Weight,
    check_finite,
    check_positive,
    register,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["DeltaOrthogonal", "Dirac", "Identity", "Orthogonal", "Sparse", "unit_rows"]


def _torch_order(rank: int, layout: Layout, scheme: str) -> tuple[int, ...]:
    """Permutation that views a ``layout`` tensor in torch order ``(out, in, *kernel)``."""
    if layout == "torch":
        return tuple(range(rank))
    if layout == "torch_transposed":
        return (1, 0, *range(2, rank))
    if layout in ("keras", "jax"):
        return (rank - 1, rank - 2, *range(rank - 2))
    raise ShapeError(f"{scheme} does not support layout {layout!r}; use torch, keras or jax.")


def unit_rows(tensor: torch.Tensor, layout: Layout = "torch") -> torch.Tensor:
    """A weight as one row per output unit: ``(out, in * prod(kernel))`` in torch order.

    Args:
        tensor: the weight, laid out as ``layout`` says.
        layout: ``torch``, ``torch_transposed``, ``keras`` or ``jax``.

    Raises:
        ShapeError: ``layout`` has no output-unit axis to read rows from (``keras_depthwise``).
    """
    view = tensor.permute(_torch_order(tensor.dim(), layout, "unit_rows"))
    return view.reshape(view.shape[0], -1)


def _matrix_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, int]:
    """The 2-D view orthogonal works on: torch flattens after axis 0, Keras before the last."""
    if layout in ("keras", "keras_depthwise", "jax"):
        return math.prod(shape[:-1]), shape[-1]
    return shape[0], math.prod(shape[1:])


def _value_stats(total: float, square_sum: float, numel: int, bound: float) -> ValueStats:
    mean = total / numel
    return ValueStats(mean, math.sqrt(max(square_sum / numel - mean * mean, 0.0)), bound)


@dataclasses.dataclass(frozen=True)
class _WholeTensor(Scheme):
    """A scheme that builds the tensor as a whole, for tensors of ``ranks`` dimensions only."""

    ranks: ClassVar[Sequence[int]]
    rank_hint: ClassVar[str]  # the way out, for a tensor of another rank

    def _check(self, weight: Weight) -> None:
        if len(weight.shape) not in self.ranks:
            listed = list(self.ranks)
            allowed = (
                " or ".join(str(r) for r in listed)
                if len(listed) <= 3
                else f"{listed[0]} to {listed[-1]}"
            )
            raise ShapeError(
                f"{self.name} needs a tensor of {allowed} dimensions, got shape {weight.shape}. "
                f"{self.rank_hint}"
            )


@register()
@dataclasses.dataclass(frozen=True)
class Orthogonal(_WholeTensor):
    r"""A (semi-)orthogonal matrix times ``gain`` (Saxe et al., 2014).

    The tensor is viewed as a matrix (torch layout: ``(shape[0], numel/shape[0])``; Keras/JAX:
    ``(numel/shape[-1], shape[-1])``), a Gaussian matrix is QR-factorized and
    :math:`Q\,\mathrm{diag}(\mathrm{sign}\,R_{ii})` kept, which is Haar-distributed
    (Mezzadri, 2007). Entries have std :math:`g/\sqrt{\max(\text{rows}, \text{cols})}`.
    float16/bfloat16 tensors are factorized in float32.
    """

    name = "orthogonal"
    formula = "W = gain * Q, Q from QR of a Gaussian matrix, sign-corrected"
    ranks = range(2, 33)
    rank_hint = "Orthogonal needs a matrix or a kernel."
    gain: float = 1.0

    def __post_init__(self) -> None:
        check_finite(self.name, "gain", self.gain)

    def _stats(self, weight: Weight) -> ValueStats:
        rows, cols = _matrix_shape(weight.shape, weight.layout)
        return ValueStats(0.0, abs(self.gain) / math.sqrt(max(rows, cols)), abs(self.gain))

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        import torch

        if tensor.numel() == 0 or tensor.is_meta:
            return tensor
        rows, cols = _matrix_shape(weight.shape, weight.layout)
        work_dtype = (
            torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype
        )
        gaussian = torch.empty((rows, cols), dtype=work_dtype, device=tensor.device)
        gaussian.normal_(0, 1, generator=generator)
        if rows < cols:
            gaussian.t_()
        q, r = torch.linalg.qr(gaussian)
        q *= torch.diag(r, 0).sign()
        if rows < cols:
            q.t_()
        return tensor.copy_(q.mul_(self.gain).reshape(weight.shape))

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        rows, cols = _matrix_shape(weight.shape, weight.layout)
        gaussian = rng.standard_normal((rows, cols))
        if rows < cols:
            gaussian = gaussian.T
        q, r = np.linalg.qr(gaussian)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(weight.shape).astype(dtype, copy=False)


@register("eye")
@dataclasses.dataclass(frozen=True)
class Identity(_WholeTensor):
    """``gain`` on the main diagonal of a 2-D matrix, 0 elsewhere (non-square allowed)."""

    name = "identity"
    formula = "W = gain * I (2-D)"
    ranks = (2,)
    rank_hint = "For convolutions use 'dirac'."
    gain: float = 1.0

    def __post_init__(self) -> None:
        check_finite(self.name, "gain", self.gain)

    def _stats(self, weight: Weight) -> ValueStats:
        count = min(weight.shape)
        g = float(self.gain)
        return _value_stats(g * count, g * g * count, max(math.prod(weight.shape), 1), abs(g))

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        tensor.zero_()
        tensor.diagonal().fill_(self.gain)
        return tensor

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        rows, cols = weight.shape
        return (self.gain * np.eye(rows, cols)).astype(dtype, copy=False)


def _dirac_indices(
    torch_shape: tuple[int, ...], groups: int, scheme: str
) -> tuple[list[int], list[int], list[int]]:
    """(out index, in index, kernel centre) of every 1 of an identity convolution."""
    if groups < 1 or torch_shape[0] % groups:
        raise ShapeError(
            f"{scheme}: {groups} groups do not divide the {torch_shape[0]} output channels of "
            f"a weight of torch-order shape {torch_shape}. Pass the layer's own 'groups'."
        )
    per_group = torch_shape[0] // groups
    diagonal = min(per_group, torch_shape[1])
    outs = [g * per_group + d for g in range(groups) for d in range(diagonal)]
    ins = [d for _ in range(groups) for d in range(diagonal)]
    return outs, ins, [size // 2 for size in torch_shape[2:]]


@register("delta")
@dataclasses.dataclass(frozen=True)
class Dirac(_WholeTensor):
    """Identity convolution: channel ``d`` of each group passes unchanged through the centre tap.

    As ``torch.nn.init.dirac_``: 1 at ``[g*out_per_group + d, d, k_1//2, ...]`` for
    ``d < min(out_per_group, in)``, 0 elsewhere.
    """

    name = "dirac"
    formula = "W[g*o + d, d, centre] = 1, else 0"
    ranks = (3, 4, 5)
    rank_hint = "For a Linear weight use 'identity'."
    groups: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 1:
            raise ConfigError(f"dirac: groups must be a positive integer, got {self.groups!r}.")

    def _stats(self, weight: Weight) -> ValueStats:
        dims = weight.shape
        order = _torch_order(len(dims), weight.layout, self.name)
        outs, _, _ = _dirac_indices(tuple(dims[a] for a in order), self.groups, self.name)
        return _value_stats(len(outs), len(outs), math.prod(dims), 1.0)

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:

        view = tensor.permute(_torch_order(tensor.dim(), weight.layout, self.name))
        outs, ins, centre = _dirac_indices(tuple(view.shape), self.groups, self.name)
        if tensor.is_meta:
            return tensor
        tensor.zero_()
        view[(outs, ins, *centre)] = 1  # type: ignore[index]
        return tensor

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        out = np.zeros(weight.shape, dtype=dtype)
        view = out.transpose(_torch_order(out.ndim, weight.layout, self.name))
        outs, ins, centre = _dirac_indices(view.shape, self.groups, self.name)
        view[(outs, ins, *centre)] = 1  # type: ignore[index]
        return out


@register()
@dataclasses.dataclass(frozen=True)
class DeltaOrthogonal(_WholeTensor):
    r"""Delta-orthogonal convolution kernel (Xiao et al., 2018), as JAX's ``delta_orthogonal``.

    Zero everywhere except the centre tap (index ``(k-1)//2`` on each spatial axis), which holds
    an ``(out, in)`` matrix with orthonormal columns times ``gain``. Needs ``in <= out``. With it a
    deep CNN's input-output Jacobian is orthogonal at init (dynamical isometry).
    """

    name = "delta_orthogonal"
    formula = "W[:, :, centre] = gain * Q (orthonormal columns), else 0"
    ranks = (3, 4, 5)
    rank_hint = "For a Linear weight use 'orthogonal'."
    gain: float = 1.0

    def __post_init__(self) -> None:
        check_finite(self.name, "gain", self.gain)

    def _order(self, weight: Weight) -> tuple[int, ...]:
        return _torch_order(len(weight.shape), weight.layout, self.name)

    def _check(self, weight: Weight) -> None:
        super()._check(weight)
        out_channels, in_channels = (weight.shape[a] for a in self._order(weight)[:2])
        if in_channels > out_channels:
            raise ShapeError(
                f"delta_orthogonal needs in_channels <= out_channels, got {in_channels} in and "
                f"{out_channels} out (shape {weight.shape}, layout {weight.layout!r}). "
                "Use 'orthogonal'."
            )

    def _stats(self, weight: Weight) -> ValueStats:
        n_in = weight.shape[self._order(weight)[1]]
        g = float(self.gain)
        return _value_stats(0.0, g * g * n_in, math.prod(weight.shape), abs(g))

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        import torch

        view = tensor.permute(self._order(weight))
        if tensor.is_meta:
            return tensor
        centre = tuple((size - 1) // 2 for size in view.shape[2:])
        matrix = torch.empty(view.shape[:2], dtype=tensor.dtype, device=tensor.device)
        Orthogonal(self.gain).fill_(matrix, generator)
        tensor.zero_()
        view[(slice(None), slice(None), *centre)] = matrix  # type: ignore[index]
        return tensor

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        out = np.zeros(weight.shape, dtype=dtype)
        view = out.transpose(self._order(weight))
        centre = tuple((size - 1) // 2 for size in view.shape[2:])
        matrix = Orthogonal(self.gain).array(view.shape[:2], rng, layout="torch")
        view[(slice(None), slice(None), *centre)] = matrix
        return out


@register()
@dataclasses.dataclass(frozen=True)
class Sparse(_WholeTensor):
    r"""Martens (2010): N(0, std^2), then ``ceil(sparsity * rows)`` zeros in every column.

    On a torch ``(out, in)`` weight each input unit keeps ``rows - ceil(sparsity*rows)``
    connections. Unlike ``torch.nn.init.sparse_``, the positions of the zeros also come from
    ``generator`` (torch draws them from the global generator).
    """

    name = "sparse"
    formula = "w ~ N(0, std^2); ceil(sparsity * rows) zeros per column"
    ranks = (2,)
    rank_hint = "Sparse init is for 2-D weights."
    sparsity: float = 0.1
    std: float = 0.01

    def __post_init__(self) -> None:
        check_finite(self.name, "sparsity", self.sparsity)
        if not 0.0 <= self.sparsity <= 1.0:
            raise ConfigError(f"sparse: sparsity must lie in [0, 1], got {self.sparsity!r}.")
        check_positive(self.name, "std", self.std, allow_zero=True)

    def _zeros_per_column(self, rows: int) -> int:
        return math.ceil(self.sparsity * rows)

    def _stats(self, weight: Weight) -> ValueStats:
        rows = weight.shape[_torch_order(2, weight.layout, self.name)[0]]
        kept = (rows - self._zeros_per_column(rows)) / rows if rows else 0.0
        return ValueStats(0.0, self.std * math.sqrt(kept), None)

    def _fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None, weight: Weight
    ) -> torch.Tensor:
        import torch

        if tensor.is_meta:
            return tensor
        view = tensor.permute(_torch_order(2, weight.layout, self.name))
        rows, cols = view.shape
        zeros = self._zeros_per_column(rows)
        device = generator.device if generator is not None else None
        tensor.normal_(0, self.std, generator=generator)
        for column in range(cols):
            chosen = torch.randperm(rows, generator=generator, device=device)[:zeros]
            view[chosen, column] = 0
        return tensor

    def _array(self, weight: Weight, rng: np.random.Generator, dtype: Any) -> np.ndarray[Any, Any]:
        out = rng.normal(0.0, self.std, size=weight.shape)
        view = out.transpose(_torch_order(2, weight.layout, self.name))
        rows, cols = view.shape
        zeros = self._zeros_per_column(rows)
        for column in range(cols):
            view[rng.permutation(rows)[:zeros], column] = 0.0
        return out.astype(dtype, copy=False)
