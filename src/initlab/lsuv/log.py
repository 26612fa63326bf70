"""The log of one LSUV run: a row per fitted layer, and the skipped layers with their reasons.

Plain data (frozen dataclasses); ``str(log)`` is a fixed-width table, the CLI renders its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["LsuvLog", "LsuvRow", "LsuvSkip"]


@dataclass(frozen=True)
class LsuvRow:
    """What LSUV did to one fitted layer.

    Attributes:
        layer: the qualified name of the module whose output was measured.
        kind: its class name.
        weight: the qualified name of the weight that was rescaled (``out_proj.weight`` for
            a MultiheadAttention).
        iterations: how many times its weight was rescaled.
        initial_var: the output variance before the first rescaling (after the pre-init and
            the earlier layers' rescaling).
        final_var: the output variance after the last rescaling.
        final_mean: the output mean after the last rescaling.
        converged: ``|final_var - target_var| < tol``.
    """

    layer: str
    kind: str
    weight: str
    iterations: int
    initial_var: float
    final_var: float
    final_mean: float
    converged: bool


@dataclass(frozen=True)
class LsuvSkip:
    """A weight-bearing layer LSUV left as it was, and why.

    Attributes:
        layer: the module's qualified name.
        kind: its class name.
        reason: why it was not fitted, in plain words.
    """

    layer: str
    kind: str
    reason: str


@dataclass(frozen=True)
class LsuvLog:
    """The log of one :func:`lsuv` run: the fitted layers in forward order, then the skipped.

    Attributes:
        rows: one :class:`LsuvRow` per fitted layer, in forward order.
        target_var: the variance aimed at.
        tol: the tolerance on the variance.
        max_iter: the most rescalings a layer was allowed.
        seed: the seed of the orthonormal pre-init (``None`` without it).
        skipped: one :class:`LsuvSkip` per weight-bearing layer that was not fitted, in the
            model's module order.
        forward_passes: the full forward passes of the model the run made: one to find the
            layers (and their order) before changing anything, one to fit them all (plus one
            to materialize lazy modules).
        layer_calls: the calls of a single fitted layer on its stored input, made after a
            rescaling of a layer whose output is not exactly proportional to its weight (a
            fixed nonzero bias, a forward of the user's); a layer of a known affine kind
            (Linear, Conv, ...) is measured once and needs none.
    """

    rows: tuple[LsuvRow, ...]
    target_var: float
    tol: float
    max_iter: int
    seed: int | None
    skipped: tuple[LsuvSkip, ...] = ()
    forward_passes: int = 0
    layer_calls: int = 0

    @property
    def forward_equivalents(self) -> float:
        r"""What the run cost in forward passes of the model:
        :math:`\text{forward\_passes} + \text{layer\_calls} / \text{len(rows)}`, a call of one
        layer counted as one fitted layer's share of a pass (the fitted layers carry nearly
        all of a network's work). The per-layer measurements (one reduction each) and
        rescalings (one multiplication of the output) are not counted."""
        return self.forward_passes + self.layer_calls / max(len(self.rows), 1)

    @property
    def cost(self) -> str:
        """One line: the passes and single-layer calls, and their forward passes' worth."""
        passes = f"{self.forward_passes} forward pass{'es' if self.forward_passes != 1 else ''}"
        calls = f"{self.layer_calls} single-layer call{'s' if self.layer_calls != 1 else ''}"
        return f"{passes} and {calls} ({self.forward_equivalents:.3g} forward passes' worth)"

    @property
    def converged(self) -> bool:
        """At least one layer was fitted and every fitted layer ended within the tolerance.

        Skipped layers do not count either way (:attr:`skipped` lists them). With nothing
        fitted (a model of only an LSTM, or without any weight) nothing was brought to the
        target variance, so this is ``False`` rather than vacuously ``True``.
        """
        return bool(self.rows) and all(row.converged for row in self.rows)

    @property
    def summary(self) -> str:
        """One line: ``"N of M fitted layers converged; K skipped"``."""
        done = sum(row.converged for row in self.rows)
        text = f"{done} of {len(self.rows)} fitted layers converged; {len(self.skipped)} skipped"
        return text if self.rows else f"{text} (nothing was fitted)"

    def __len__(self) -> int:
        return len(self.rows)

    def to_rows(self) -> list[dict[str, Any]]:
        """The fitted rows as plain dicts (for a table, JSON or pandas)."""
        return [asdict(row) for row in self.rows]

    def __str__(self) -> str:
        lines = [
            f"LSUV: target variance {self.target_var:g} ± {self.tol:g}, max_iter "
            f"{self.max_iter}: {self.summary}"
        ]
        if self.rows:
            width = max([len("layer"), *(len(row.layer) for row in self.rows)])
            kind_width = max([len("kind"), *(len(row.kind) for row in self.rows)])
            lines.append(
                f"{'layer':<{width}}  {'kind':<{kind_width}}  iterations  initial var  "
                "final var  final mean  converged"
            )
            for row in self.rows:
                lines.append(
                    f"{row.layer:<{width}}  {row.kind:<{kind_width}}  {row.iterations:>10}  "
                    f"{row.initial_var:>11.4g}  {row.final_var:>9.4g}  "
                    f"{row.final_mean:>10.3g}  {'yes' if row.converged else 'NO':>9}"
                )
            own = {(row.kind, row.weight.removeprefix(f"{row.layer}.")) for row in self.rows}
            lines.extend(
                f"({kind} rows: the module's output is measured and its {weight} rescaled)"
                for kind, weight in sorted(own)
                if weight != "weight"
            )
        if self.skipped:
            width = max(len(skip.layer) for skip in self.skipped)
            kind_width = max(len(skip.kind) for skip in self.skipped)
            lines.append("skipped (left as they were):")
            lines.extend(
                f"  {skip.layer:<{width}}  {skip.kind:<{kind_width}}  {skip.reason}"
                for skip in self.skipped
            )
        lines.append(f"cost: {self.cost}")
        return "\n".join(lines)

    def __rich__(self) -> Text:
        """What a Rich console prints: the same summary as :meth:`__str__`, as plain text
        (without it Rich would print the dataclass's fields)."""
        from rich.text import Text

        return Text(str(self))
