r"""The input-output Jacobian's singular values at one example (dynamical isometry).

For one example :math:`x` of the batch and its row :math:`y = f(x)` of the measured output, the
singular values of :math:`J = \partial y/\partial x` measure dynamical isometry (Pennington et
al., 2017): a well-conditioned deep net has them all near 1. Only the first floating-point input
is perturbed (token ids have no Jacobian). The example is evaluated among the first
:data:`JACOBIAN_BATCH` examples of the batch, so normalization layers see batch statistics; when
its output alone is the same as among the others (no layer mixes examples), every product runs on
the example alone, a fraction of the cost.

* **Exact** when the output is small (at most :data:`EXACT_JACOBIAN_LIMIT` values, e.g. a
  classifier's logits): :math:`J` is built from one reverse-mode product per row and its
  singular values computed by SVD. The smallest is reported when the output has no more values
  than the input (else it is 0).
* **Estimate** otherwise. The largest singular value by ``steps`` of Golub-Kahan-Lanczos
  bidiagonalization (Golub & Kahan, 1965): each step costs one :math:`Jv` and one
  :math:`J^\top u`, and the largest singular value of the small bidiagonal matrix converges to
  :math:`J`'s much faster than power iteration does. The mean squared singular value by Hutch++
  (Meyer et al., 2021): the Lanczos vectors' share of :math:`\lVert J\rVert_F^2` exactly, the
  rest by Hutchinson's estimator :math:`\mathbb E\lVert J^\top\omega\rVert^2` (Hutchinson,
  1989) with ``probes`` reverse-mode products. The smallest is not estimated.

:math:`J^\top u` is reverse mode through one retained graph; where the example is evaluated
alone, several are one batched backward pass (the weights are read once for all of them).
:math:`Jv` is the reverse-mode product of :math:`u \mapsto J^\top u` (linear in :math:`u`)
with :math:`v`: a double backward through the same graph, no new forward pass, checked once
against the pullback. Where an operation has no double backward (fused attention kernels) it is
forward-mode AD (one forward pass with dual tensors; PyTorch's forward mode costs several
forward passes on dense layers, and its first use in a process loads ``torch._dynamo``, over a
second, which is why it is the second choice). Where an operation has no forward-mode
derivative either (CPU attention kernels, oneDNN recurrent layers) it is the central difference

.. math:: Jv \approx \frac{f(x + \varepsilon v) - f(x - \varepsilon v)}{2\varepsilon},
    \qquad \varepsilon = \epsilon_\text{mach}^{1/3} \max(\lVert x\rVert, 1)

in the model's own dtype (the step that balances the :math:`O(\varepsilon^2)` truncation error
against the :math:`O(\epsilon_\text{mach}/\varepsilon)` rounding error).
:attr:`JacobianSpectrum.method` says which was used.

Every model evaluation starts from the same random state, so dropout draws the same masks and
all products see one function; the global random state is restored afterwards, the probes draw
from their own generator, and buffers (BatchNorm running statistics) are restored. Whatever
cannot be computed (integer inputs, a non-finite output, a model that fails) comes back as
:attr:`JacobianSpectrum.skipped` with the reason, never as an exception.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as forward_ad
from torch import nn

from initlab.batches import (
    Batch,
    OutputFunction,
    call_model,
    floating_input,
    output_tensor,
    replace_input,
    short_reason,
    slice_examples,
)
from initlab.plan.buffers import buffers_restored

__all__ = [
    "DOUBLE_BACKWARD",
    "EXACT",
    "EXACT_JACOBIAN_LIMIT",
    "FINITE_DIFFERENCE",
    "FORWARD_MODE",
    "JACOBIAN_BATCH",
    "JacobianSpectrum",
    "jacobian_spectrum",
]

EXACT_JACOBIAN_LIMIT = 256
#: Examples evaluated with the perturbed one, so normalization layers still see batch
#: statistics. Where examples mix (BatchNorm in training mode) every product runs on all of
#: them, so this sets the Jacobian's cost: with four, the exact spectrum of a ResNet-18's ten
#: logits costs about half a plain forward+backward of a batch of 32.
JACOBIAN_BATCH = 4

EXACT = "exact"
DOUBLE_BACKWARD = "double-backward estimate"
FORWARD_MODE = "forward-mode estimate"
FINITE_DIFFERENCE = "finite-difference estimate"


@dataclass(frozen=True)
class JacobianSpectrum:
    """Singular values of the input-output Jacobian, for one example.

    Attributes:
        largest: the largest singular value.
        smallest: the smallest (``None`` when estimated rather than computed exactly).
        mean_square: the mean of the squared singular values.
        method: ``"exact"``, ``"double-backward estimate"``, ``"forward-mode estimate"`` or
            ``"finite-difference estimate"`` (how :math:`Jv` was computed; see the module
            docstring), ``""`` when skipped.
        skipped: why it was not computed (e.g. integer inputs), else ``""``.
    """

    largest: float | None
    smallest: float | None
    mean_square: float | None
    method: str
    skipped: str = ""

    @property
    def spread(self) -> float | None:
        """largest / smallest (the condition number), when both are known."""
        if self.largest is None or not self.smallest:
            return None
        return self.largest / self.smallest


def _skipped(reason: str) -> JacobianSpectrum:
    return JacobianSpectrum(None, None, None, "", skipped=reason)


def jacobian_spectrum(
    model: nn.Module,
    batch: Batch,
    *,
    example: int = 0,
    steps: int = 8,
    probes: int = 4,
    seed: int = 0,
    output_fn: OutputFunction | None = None,
) -> JacobianSpectrum:
    """Singular values of d output[example] / d input[example] (see the module docstring).

    Args:
        model: the model (left as it was: buffers and the global random state are restored).
        batch: a tensor, a tuple/list of inputs or a mapping of keyword inputs; the first
            floating-point input is the one perturbed.
        example: which example's Jacobian.
        steps: Golub-Kahan-Lanczos steps for the largest singular value (estimate only).
        probes: Hutchinson probes for the mean square (estimate only).
        seed: seed of the probes' own generator.
        output_fn: picks the output tensor from the model's output (default: ``logits``, else
            the first floating-point tensor).

    Returns:
        The spectrum, or one whose :attr:`~JacobianSpectrum.skipped` says why there is none.
    """
    found = floating_input(batch)
    if found is None:
        return _skipped("the input is not floating point (token ids)")
    if torch.is_inference_mode_enabled():
        return _skipped("autograd is off inside torch.inference_mode()")
    try:
        with buffers_restored(model), _same_randomness(found[1].device) as reset:
            return _spectrum(
                model, batch, example, max(steps, 1), max(probes, 1), seed, output_fn, reset
            )
    except Exception as error:  # advisory: a failure is a skipped measurement, not a crash
        return _skipped(f"the model failed while it was evaluated ({short_reason(error)})")


@contextlib.contextmanager
def _same_randomness(device: torch.device) -> Iterator[Callable[[], None]]:
    """Yields a function that resets the global random state to where it is now; restores that
    state on exit (the model's random stream is left as it was found)."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state(device) if cuda else None

        def reset() -> None:
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, device)

        yield reset


@dataclass(frozen=True)
class _Examples:
    """Some examples of the batch, and where the perturbed one is among them."""

    inputs: Batch
    name: str
    tensor: torch.Tensor
    position: int


def _examples(batch: Batch, start: int, stop: int, position: int) -> _Examples:
    inputs = slice_examples(batch, start, stop)
    found = floating_input(inputs)
    assert found is not None  # the caller checked the full batch; cutting keeps its inputs
    return _Examples(inputs, found[0], found[1].detach(), position)


def _evaluator(
    model: nn.Module,
    part: _Examples,
    output_fn: OutputFunction | None,
    reset: Callable[[], None],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> the measured output's row for the perturbed example, its input replaced by x."""
    tensor, position, count = part.tensor, part.position, part.tensor.shape[0]

    def evaluate(x: torch.Tensor) -> torch.Tensor:
        reset()
        full = torch.cat([tensor[:position], x.unsqueeze(0), tensor[position + 1 :]])
        output = call_model(model, replace_input(part.inputs, part.name, full))
        measured = output_tensor(output, output_fn, "doctor (Jacobian)")
        row = measured[position] if measured.dim() > 0 and measured.shape[0] == count else measured
        return row.reshape(-1)

    return evaluate


def _alone_is_the_same(
    alone: Callable[[torch.Tensor], torch.Tensor], point: torch.Tensor, together: torch.Tensor
) -> bool:
    """Whether the example's output alone equals its output among the others.

    Then no layer mixes examples (no BatchNorm in training mode, no dropout drawing masks for
    the whole batch), and every product can run on the one example: the same Jacobian at a
    fraction of the cost. Kernels for other batch sizes may sum in another order, hence the
    tolerance: 1e-3 of the output's scale (16 epsilons in half precision), while a layer that
    mixes examples changes the output by a sizable fraction of it.
    """
    try:
        with torch.no_grad():
            single = alone(point)
    except Exception:  # a model that needs several examples (BatchNorm in training mode)
        return False
    if single.shape != together.shape:
        return False
    reference = together.detach().float()
    tolerance = max(1e-3, 16 * float(torch.finfo(together.dtype).eps))
    scale = float(reference.abs().max())
    difference = float((single.float() - reference).abs().max())
    return difference <= tolerance * scale


@dataclass(frozen=True)
class _Linearized:
    """The measured output row ``image`` of the perturbed example, differentiable w.r.t.
    ``anchor`` (its input), and the model evaluation that made it."""

    evaluate: Callable[[torch.Tensor], torch.Tensor]
    alone: bool
    anchor: torch.Tensor
    image: torch.Tensor

    @property
    def work(self) -> torch.dtype:
        """float64 for a float64 model, float32 otherwise (half precision is widened)."""
        return torch.float64 if self.image.dtype == torch.float64 else torch.float32

    def pullback(self, cotangents: torch.Tensor) -> torch.Tensor:
        r""":math:`J^\top u` for each row ``u`` of ``cotangents``, as the rows of the result, by
        reverse mode through the retained graph: one batched backward pass where the example
        is evaluated alone (the rows become a batch dimension: one read of the weights for
        all), else one pass per row (where examples mix, batching them measured no faster)."""
        if self.alone and cotangents.shape[0] > 1:
            try:
                with warnings.catch_warnings():
                    # vmap's "performance drop" notice for an op without a batching rule
                    warnings.simplefilter("ignore", UserWarning)
                    return self._pulled(cotangents, batched=True)
            except Exception:  # an op autograd cannot batch: one pass per row
                pass
        return torch.cat([self._pulled(row.unsqueeze(0), batched=False) for row in cotangents])

    def _pulled(self, cotangents: torch.Tensor, *, batched: bool) -> torch.Tensor:
        rows = cotangents.shape[0]
        (grad,) = torch.autograd.grad(
            self.image,
            self.anchor,
            cotangents.to(self.image.dtype) if batched else cotangents[0].to(self.image.dtype),
            retain_graph=True,
            allow_unused=True,
            is_grads_batched=batched,
        )
        if grad is None:  # the output does not reach this input through every path
            return torch.zeros(
                rows, self.anchor.numel(), dtype=self.work, device=self.anchor.device
            )
        return grad.reshape(rows, -1).to(self.work)


def _linearized(
    model: nn.Module,
    batch: Batch,
    example: int,
    output_fn: OutputFunction | None,
    reset: Callable[[], None],
) -> _Linearized | str:
    """The output row of ``example`` with its graph, evaluated alone when that is the same
    function (see :func:`_alone_is_the_same`); or why there is none."""
    shared = _examples(batch, 0, max(JACOBIAN_BATCH, example + 1), example)
    name, count = shared.name, shared.tensor.shape[0]
    if not 0 <= example < count:
        return f"example {example} is not in a batch of {count}"
    point = shared.tensor[example]
    evaluate = _evaluator(model, shared, output_fn, reset)
    anchor = point.clone().requires_grad_(True)
    with torch.enable_grad():
        image = evaluate(anchor)
    alone = False
    if count > 1 and bool(torch.isfinite(image).all()):
        single = _evaluator(model, _examples(batch, example, example + 1, 0), output_fn, reset)
        if _alone_is_the_same(single, point, image):
            evaluate, alone = single, True
            with torch.enable_grad():
                image = evaluate(anchor)
    if not image.requires_grad:
        return f"the output does not depend differentiably on {name}"
    if not bool(torch.isfinite(image).all()):
        return "the output is not finite (NaN or inf), so its Jacobian is undefined"
    return _Linearized(evaluate, alone or count == 1, anchor, image)


def _spectrum(
    model: nn.Module,
    batch: Batch,
    example: int,
    steps: int,
    probes: int,
    seed: int,
    output_fn: OutputFunction | None,
    reset: Callable[[], None],
) -> JacobianSpectrum:
    found = _linearized(model, batch, example, output_fn, reset)
    if isinstance(found, str):
        return _skipped(found)
    in_features, out_features = found.anchor.numel(), found.image.numel()
    if out_features <= EXACT_JACOBIAN_LIMIT:
        jacobian = found.pullback(
            torch.eye(out_features, dtype=found.work, device=found.image.device)
        )
        if not bool(torch.isfinite(jacobian).all()):
            return _skipped(_OVERFLOW)
        values = torch.linalg.svdvals(jacobian).cpu()
        smallest = float(values.min()) if out_features <= in_features else 0.0
        return JacobianSpectrum(
            float(values.max()), smallest, float(values.square().mean()), EXACT
        )
    generator = torch.Generator(device=found.image.device).manual_seed(seed)

    def gaussian(*size: int) -> torch.Tensor:
        return torch.randn(size, generator=generator, device=found.image.device, dtype=found.work)

    products = _Products(found)
    krylov = _bidiagonalize(
        products, lambda u: found.pullback(u.unsqueeze(0))[0], gaussian(in_features), steps
    )
    if krylov is None:
        return _skipped(_OVERFLOW)
    # Hutch++ (Meyer et al., 2021): ||J||_F^2 = ||U^T J||_F^2 + ||(I - U U^T) J||_F^2. The
    # first term is known exactly from the Lanczos vectors U (which hold the largest singular
    # directions, where Hutchinson's variance comes from); probes estimate only the rest, all
    # pulled back together.
    draws = gaussian(probes, out_features)
    if krylov.left:
        draws = torch.stack([_orthogonalized(draw, krylov.left) for draw in draws])
    squares = found.pullback(draws).reshape(probes, -1).square().sum(dim=1)
    total = krylov.captured + float(squares.mean())
    if not math.isfinite(total):
        return _skipped(_OVERFLOW)
    mean_square = total / min(in_features, out_features)
    return JacobianSpectrum(krylov.largest, None, mean_square, products.method)


_OVERFLOW = "the Jacobian holds NaN or inf values (the signal overflows)"


class _Products:
    """J v: by differentiating the retained graph's :math:`J^\top u` w.r.t. :math:`u`
    (double backward); where an operation has no double backward, by forward-mode AD; where
    it has no forward-mode formula either, by a central finite difference (decided at the
    first product, then kept)."""

    def __init__(self, linearized: _Linearized) -> None:
        self.linearized = linearized
        point = linearized.anchor.detach()
        self.point = point
        self.work = linearized.work
        self.method = DOUBLE_BACKWARD
        scale = max(float(torch.linalg.vector_norm(point.float())), 1.0)
        self.step = float(torch.finfo(point.dtype).eps) ** (1.0 / 3.0) * scale
        self._transposed: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        if self.method == DOUBLE_BACKWARD:
            try:
                return self._double_backward(vector)
            except Exception:  # no double backward for some op: forward mode, once
                self.method = FORWARD_MODE
        if self.method == FORWARD_MODE:
            try:
                return self._forward_mode(vector)
            except Exception:  # no forward-mode formula for some op: fall back, once
                self.method = FINITE_DIFFERENCE
        return self._finite_difference(vector)

    def _direction(self, vector: torch.Tensor) -> torch.Tensor:
        return vector.reshape(self.point.shape).to(self.point.dtype)

    def _double_backward(self, vector: torch.Tensor) -> torch.Tensor:
        r""":math:`J v = \partial (J^\top u)^\top v / \partial u`: :math:`J^\top u` is linear
        in :math:`u`, so its own reverse-mode product with :math:`v` is :math:`J v`. The first
        product is checked against the pullback (:math:`\langle J^\top J v, v\rangle =
        \lVert J v\rVert^2`): an operation whose backward is not differentiable but is not
        marked so would cut a path silently."""
        found = self.linearized
        first = self._transposed is None
        if self._transposed is None:
            cotangent = torch.zeros_like(found.image, requires_grad=True)
            with torch.enable_grad():
                (transposed,) = torch.autograd.grad(
                    found.image, found.anchor, cotangent, retain_graph=True, create_graph=True
                )
            self._transposed = (cotangent, transposed)
        cotangent, transposed = self._transposed
        (product,) = torch.autograd.grad(
            transposed, cotangent, self._direction(vector), retain_graph=True
        )
        result = product.reshape(-1).to(self.work)
        if first:
            back = found.pullback(result.unsqueeze(0))[0]
            norm_sq = float(result.square().sum())
            scale = float(torch.linalg.vector_norm(back) * torch.linalg.vector_norm(vector))
            if abs(float(back @ vector.to(self.work)) - norm_sq) > 1e-3 * scale:
                raise RuntimeError("the double backward disagrees with the pullback")
        return result

    def _forward_mode(self, vector: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), forward_ad.dual_level():
            with warnings.catch_warnings():
                # The first dual tensor of a process loads torch's jvp decompositions, which
                # torch 2.13 scripts with its deprecated TorchScript (a warning not ours to show).
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                dual = forward_ad.make_dual(  # type: ignore[no-untyped-call]
                    self.point, self._direction(vector)
                )
            output = self.linearized.evaluate(dual)
            tangent = forward_ad.unpack_dual(output).tangent  # type: ignore[no-untyped-call]
        if not isinstance(tangent, torch.Tensor):  # lost on the way (a detach, an int cast)
            raise RuntimeError("no tangent reached the output")
        return tangent.reshape(-1).to(self.work)

    def _finite_difference(self, vector: torch.Tensor) -> torch.Tensor:
        direction = self._direction(vector)
        evaluate = self.linearized.evaluate
        with torch.no_grad():
            plus = evaluate(self.point + self.step * direction).to(self.work)
            minus = evaluate(self.point - self.step * direction).to(self.work)
        difference: torch.Tensor = (plus - minus) / (2.0 * self.step)
        return difference


@dataclass(frozen=True)
class _Krylov:
    r"""What the bidiagonalization found: the largest singular value, the orthonormal left
    vectors :math:`u_j`, and :math:`\sum_j \lVert J^\top u_j\rVert^2`."""

    largest: float
    left: list[torch.Tensor]
    captured: float


def _bidiagonalize(
    apply: Callable[[torch.Tensor], torch.Tensor],
    pullback: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    steps: int,
) -> _Krylov | None:
    r"""Golub-Kahan-Lanczos bidiagonalization with full reorthogonalization.

    From a unit :math:`v_1`: :math:`\alpha_j u_j = J v_j - \beta_{j-1} u_{j-1}`,
    :math:`\beta_j v_{j+1} = J^\top u_j - \alpha_j v_j`; the largest singular value of the upper
    bidiagonal :math:`B` (diagonal :math:`\alpha`, superdiagonal :math:`\beta`) is a lower bound
    of :math:`\sigma_\max(J)` that converges to it. ``None`` if a product is not finite.
    """
    norm = float(torch.linalg.vector_norm(start))
    right = [start / norm]
    left: list[torch.Tensor] = []
    alphas: list[float] = []
    betas: list[float] = []
    captured = 0.0
    for _ in range(steps):
        u = apply(right[-1])
        if left:
            u = _orthogonalized(u - betas[-1] * left[-1], left)
        alpha = float(torch.linalg.vector_norm(u))
        if not math.isfinite(alpha):
            return None
        if alpha == 0.0 or (alphas and alpha <= 1e-7 * max(alphas)):
            break  # the Krylov space is exhausted: B holds J's spectrum on it exactly
        alphas.append(alpha)
        left.append(u / alpha)
        pulled = pullback(left[-1])
        captured += float(pulled.square().sum())
        v = _orthogonalized(pulled - alpha * right[-1], right)
        beta = float(torch.linalg.vector_norm(v))
        if not math.isfinite(beta) or not math.isfinite(captured):
            return None
        if beta <= 1e-7 * alpha:
            break
        betas.append(beta)
        right.append(v / beta)
    if not alphas:
        return _Krylov(0.0, [], 0.0)
    size = len(alphas)
    bidiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if size > 1:
        bidiagonal += torch.diag(torch.tensor(betas[: size - 1], dtype=torch.float64), 1)
    return _Krylov(float(torch.linalg.svdvals(bidiagonal).max()), left, captured)


def _orthogonalized(vector: torch.Tensor, basis: list[torch.Tensor]) -> torch.Tensor:
    """``vector`` minus its projection on the orthonormal ``basis`` (Gram-Schmidt, twice)."""
    stacked = torch.stack(basis)
    for _ in range(2):  # once is not enough in floating point (Giraud et al., 2005)
        vector = vector - stacked.T @ (stacked @ vector)
    return vector
