r"""ZerO: every weight from zeros and ones (Zhao, Schäfer & Anandkumar, 2022, TMLR).

"ZerO Initialization: Initializing Neural Networks with only Zeros and Ones". Algorithm 1 gives
a layer :math:`W \in \mathbb R^{m \times n}` (``m`` outputs, ``n`` inputs):

.. math::

    W = \begin{cases}
        I_{m \times n} & m \le n \quad\text{(the identity, or its first } m \text{ rows)}\\
        c\, I_{m \times p}\, H_p\, I_{p \times n} & m > n,\quad p = 2^k,\ k = \lceil\log_2 m\rceil
    \end{cases}

with :math:`H_p` the Sylvester Hadamard matrix (:math:`H_{2q} = [[H_q, H_q], [H_q, -H_q]]`) and
:math:`c = 2^{-k/2}`, the normalization of the reference code (``ZerO_Init_on_matrix`` in
``example_mnist.ipynb`` of ``jiaweizzhao/ZerO-initialization``: ``hadamard(p) / 2**(clog_m/2)``),
so that :math:`c H_p` is orthogonal. A layer that widens would copy its inputs into a subspace
with the identity; the Hadamard transform spreads them over every output and breaks the
symmetry deterministically. A convolution (Algorithm 2) puts that matrix on its centre tap and
0 elsewhere: ``dirac`` for :math:`m \le n`.

The preset (``zero``, registered by :mod:`initlab.plan.recipes.deep`) uses initlab's
``identity`` and ``dirac`` schemes for the layers that keep or narrow their width and
``partial_hadamard`` (:mod:`initlab.schemes.hadamard`) for the ones that widen, each layer named
in its own rule.
"""

from __future__ import annotations

from torch import nn

from initlab.errors import ConfigError
from initlab.plan.plan import Plan
from initlab.plan.recipes.name_patterns import names_regex
from initlab.plan.rules import Rule, rule

__all__ = ["zero_plan"]


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _widening_and_grouped(model: nn.Module) -> tuple[list[str], dict[int, list[str]], list[str]]:
    """The weights of the layers that widen, of the grouped convolutions by groups, and all."""
    widening: list[str] = []
    grouped: dict[int, list[str]] = {}
    weights: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, *_CONVS)):
            continue
        weight = f"{name}.weight" if name else "weight"
        weights.append(weight)
        groups = int(getattr(module, "groups", 1))
        outputs, inputs = module.weight.shape[0] // groups, module.weight.shape[1]
        if groups > 1 and outputs > inputs:
            raise ConfigError(
                f"zero preset: {name} ({type(module).__name__}, {groups} groups) widens each "
                f"group from {inputs} to {outputs} channels; ZerO defines no per-group Hadamard "
                "transform. Give it a rule of its own before the preset's."
            )
        if groups > 1:
            grouped.setdefault(groups, []).append(weight)
        elif outputs > inputs:
            widening.append(weight)
    return widening, grouped, weights


def zero_plan(model: nn.Module | None) -> Plan:
    r"""ZerO (Zhao et al., 2022; ``jiaweizzhao/ZerO-initialization``, ``example_mnist.ipynb``
    ``ZerO_Init_on_matrix``), Algorithms 1 and 2, layer by layer:

    * ``nn.Linear`` weight :math:`(m, n)`: ``identity`` (:math:`I_{m \times n}`) if
      :math:`m \le n`, else ``partial_hadamard`` (:math:`2^{-k/2} H_{2^k}[:m, :n]`);
    * ``Conv1d/2d/3d`` weight: ``dirac`` (identity on the centre tap; per group for a grouped
      convolution) if it keeps or narrows its channels, else ``partial_hadamard`` on the centre
      tap;
    * every bias 0, norms 1/0; everything else (embeddings, transposed convolutions, HF
      ``Conv1D``) kept.

    The reference's ResNet variant also changes the architecture (a Hadamard transform in the
    skip path, zero residual branches): that part is the model's, not the init's.

    Raises:
        ConfigError: no model (the widening layers are read from it), or a grouped convolution
            that widens each group.
    """
    if model is None:
        raise ConfigError(
            "zero preset needs the model: which layers widen (and get a Hadamard matrix instead "
            "of the identity) is read from their shapes. Pass the model."
        )
    widening, grouped, weights = _widening_and_grouped(model)
    rules: list[Rule] = []
    if widening:
        rules.append(rule(regex=names_regex(widening, weights), scheme="partial_hadamard"))
    for groups, names in grouped.items():
        rules.append(rule(regex=names_regex(names, weights), scheme="dirac", groups=groups))
    rules += [
        rule(types=nn.Linear, role="weight", scheme="identity"),
        rule(types=_CONVS, role="weight", scheme="dirac"),
        rule(role="bias", scheme="zeros"),
        rule(role="norm_weight", scheme="ones"),
        rule(role="norm_bias", scheme="zeros"),
    ]
    return Plan(rules, default="keep", name="zero", warn_unused=False)
