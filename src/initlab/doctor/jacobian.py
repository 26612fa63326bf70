r"""The input-output Jacobian's singular values at one example (dynamical isometry).

For one example :math:`x` of the batch and its row :math:`y = f(x)` of the measured output, the
singular values of :math:`J = \partial y/\partial x` measure dynamical isometry (Pennington et
al., 2017): a well-conditioned deep net has them all near 1. Only the first floating-point input
is perturbed (token ids have no Jacobian). The example is evaluated among the first
:data:`JACOBIAN_BATCH` examples of the batch, so normalization layers see batch statistics; when
its output alone is the same as among the others (no layer mixes examples), every product runs on
the example alone, a fraction of the cost.

* **Exact** when the output is small (at most :data:`EXACT_JACOBIAN_LIMIT` values, e.g. a
  classifier's logits): :math:`J` is built one reverse-mode row at a time and its singular values
  computed by SVD. The smallest is reported when the output has no more values than the input
  (else it is 0).
* **Estimate** otherwise. The mean squared singular value by Hutchinson's estimator
  :math:`\mathbb E\lVert J^\top\omega\rVert^2 = \lVert J\rVert_F^2`, :math:`\omega \sim
  \mathcal N(0, I)` (Hutchinson, 1989), with ``probes`` reverse-mode products; the largest by
  ``steps`` of Golub-Kahan-Lanczos bidiagonalization (Golub & Kahan, 1965), started from the
  first probe's :math:`J^\top\omega`: each step costs one :math:`Jv` and one :math:`J^\top u`,
  and the largest singular value of the small bidiagonal matrix converges to :math:`J`'s much
  faster than power iteration does. The smallest is not estimated.

:math:`J^\top u` is reverse mode through one retained graph. :math:`Jv` is forward-mode AD (one
forward pass with dual tensors; the first use in a process loads torch's decompositions, a
fraction of a second). Where an operation has no forward-mode derivative (CPU attention kernels,
oneDNN recurrent layers) it is the central difference

.. math:: Jv \approx \frac{f(x + \varepsilon v) - f(x - \varepsilon v)}{2\varepsilon},
    \qquad \varepsilon = \epsilon_\text{mach}^{1/3} \max(\lVert x\rVert, 1)

in the model's own dtype (the step that balances the :math:`O(\varepsilon^2)` truncation error
against the :math:`O(\epsilon_\text{mach}/\varepsilon)` rounding error), and
:attr:`JacobianSpectrum.method` says so. No double backward is needed, which many fused kernels
(scaled dot-product attention) do not implement.

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

__all__ = ["EXACT_JACOBIAN_LIMIT", "JACOBIAN_BATCH", "JacobianSpectrum", "jacobian_spectrum"]

EXACT_JACOBIAN_LIMIT = 256
#: Examples passed with the perturbed one (normalization layers still see several).
JACOBIAN_BATCH = 16

EXACT = "exact"
FORWARD_MODE = "forward-mode estimate"
FINITE_DIFFERENCE = "finite-difference estimate"


@dataclass(frozen=True)
class JacobianSpectrum:
    """Singular values of the input-output Jacobian, for one example.

    Attributes:
        largest: the largest singular value.
        smallest: the smallest (``None`` when estimated rather than computed exactly).
        mean_square: the mean of the squared singular values.
        method: ``"exact"``, ``"forward-mode estimate"`` or ``"finite-difference estimate"``
            (how :math:`Jv` was computed; see the module docstring), ``""`` when skipped.
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
    shared = _examples(batch, 0, max(JACOBIAN_BATCH, example + 1), example)
    name, count = shared.name, shared.tensor.shape[0]
    if not 0 <= example < count:
        return _skipped(f"example {example} is not in a batch of {count}")
    point = shared.tensor[example]
    evaluate = _evaluator(model, shared, output_fn, reset)
    anchor = point.clone().requires_grad_(True)
    with torch.enable_grad():
        image = evaluate(anchor)
    if count > 1 and bool(torch.isfinite(image).all()):
        alone = _evaluator(model, _examples(batch, example, example + 1, 0), output_fn, reset)
        if _alone_is_the_same(alone, point, image):
            evaluate = alone
            with torch.enable_grad():
                image = evaluate(anchor)
    if not image.requires_grad:
        return _skipped(f"the output does not depend differentiably on {name}")
    if not bool(torch.isfinite(image).all()):
        return _skipped("the output is not finite (NaN or inf), so its Jacobian is undefined")
    work = torch.float64 if image.dtype == torch.float64 else torch.float32

    def pullback(cotangent: torch.Tensor) -> torch.Tensor:
        """J^T cotangent, by reverse mode through the retained graph."""
        (grad,) = torch.autograd.grad(
            image, anchor, cotangent.to(image.dtype), retain_graph=True, allow_unused=True
        )
        if grad is None:  # the output does not reach this input through every path
            return torch.zeros(point.numel(), dtype=work, device=point.device)
        return grad.reshape(-1).to(work)

    in_features, out_features = point.numel(), image.numel()
    if out_features <= EXACT_JACOBIAN_LIMIT:
        rows = torch.eye(out_features, dtype=work, device=image.device)
        jacobian = torch.stack([pullback(row) for row in rows])
        if not bool(torch.isfinite(jacobian).all()):
            return _skipped(_OVERFLOW)
        values = torch.linalg.svdvals(jacobian).cpu()
        smallest = float(values.min()) if out_features <= in_features else 0.0
        return JacobianSpectrum(
            float(values.max()), smallest, float(values.square().mean()), EXACT
        )
    generator = torch.Generator(device=image.device).manual_seed(seed)

    def gaussian(size: int) -> torch.Tensor:
        return torch.randn(size, generator=generator, device=image.device, dtype=work)

    products = _Products(evaluate, point, work)
    krylov = _bidiagonalize(products, pullback, gaussian(in_features), steps)
    if krylov is None:
        return _skipped(_OVERFLOW)
    # Hutch++ (Meyer et al., 2021): ||J||_F^2 = ||U^T J||_F^2 + ||(I - U U^T) J||_F^2. The
    # first term is known exactly from the Lanczos vectors U (which hold the largest singular
    # directions, where Hutchinson's variance comes from); probes estimate only the rest.
    squares = []
    for _ in range(probes):
        probe = gaussian(out_features)
        if krylov.left:
            probe = _orthogonalized(probe, krylov.left)
        squares.append(float(pullback(probe).square().sum()))
    total = krylov.captured + sum(squares) / len(squares)
    if not math.isfinite(total):
        return _skipped(_OVERFLOW)
    mean_square = total / min(in_features, out_features)
    return JacobianSpectrum(krylov.largest, None, mean_square, products.method)


_OVERFLOW = "the Jacobian holds NaN or inf values (the signal overflows)"


class _Products:
    """J v: forward-mode AD, or a central finite difference where an operation has no
    forward-mode derivative (decided at the first product, then kept)."""

    def __init__(
        self,
        evaluate: Callable[[torch.Tensor], torch.Tensor],
        point: torch.Tensor,
        work: torch.dtype,
    ) -> None:
        self.evaluate = evaluate
        self.point = point
        self.work = work
        self.method = FORWARD_MODE
        scale = max(float(torch.linalg.vector_norm(point.float())), 1.0)
        self.step = float(torch.finfo(point.dtype).eps) ** (1.0 / 3.0) * scale

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        if self.method == FORWARD_MODE:
            try:
                return self._forward_mode(vector)
            except Exception:  # no forward-mode formula for some op: fall back, once
                self.method = FINITE_DIFFERENCE
        return self._finite_difference(vector)

    def _direction(self, vector: torch.Tensor) -> torch.Tensor:
        return vector.reshape(self.point.shape).to(self.point.dtype)

    def _forward_mode(self, vector: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), forward_ad.dual_level():
            with warnings.catch_warnings():
                # The first dual tensor of a process loads torch's jvp decompositions, which
                # torch 2.13 scripts with its deprecated TorchScript (a warning not ours to show).
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                dual = forward_ad.make_dual(  # type: ignore[no-untyped-call]
                    self.point, self._direction(vector)
                )
            output = self.evaluate(dual)
            tangent = forward_ad.unpack_dual(output).tangent  # type: ignore[no-untyped-call]
        if not isinstance(tangent, torch.Tensor):  # lost on the way (a detach, an int cast)
            raise RuntimeError("no tangent reached the output")
        return tangent.reshape(-1).to(self.work)

    def _finite_difference(self, vector: torch.Tensor) -> torch.Tensor:
        direction = self._direction(vector)
        with torch.no_grad():
            plus = self.evaluate(self.point + self.step * direction).to(self.work)
            minus = self.evaluate(self.point - self.step * direction).to(self.work)
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
