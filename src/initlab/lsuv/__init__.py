r"""Layer-sequential unit-variance initialization (LSUV; Mishkin & Matas, 2016).

.. code-block:: python

    log = initlab.lsuv(model, batch)          # model changed in place
    print(log)                                # fitted layers, then the skipped ones and why
    assert log.converged

**What is fitted.** Every weight-bearing module (one owning a parameter of two or more
dimensions; embeddings are inputs, not layers, and are left alone) ends up in the log: fitted
(a :class:`LsuvRow`) or skipped with the reason in plain words (a :class:`LsuvSkip`). A module
is fitted when LSUV can measure its output and that output is linear in one weight: Linear,
Conv1d/2d/3d, ConvTranspose1d/2d/3d, Bilinear (:math:`x_1^\top W x_2 + b`), Hugging Face's
``Conv1D`` (GPT-2), and :class:`~torch.nn.MultiheadAttention`, whose output is linear in
``out_proj.weight``: the attention module's output (the first element of its tuple) is
measured and ``out_proj.weight`` rescaled, which covers ``out_proj`` (MHA uses it functionally;
it never runs as a module). Skipped: recurrent layers (RNN/LSTM/GRU and their cells: the
output variance depends on the sequence dynamics), normalization layers, weights computed by a
parametrization (weight norm), weights tied to another module (a head tied to an embedding),
modules whose structure LSUV does not know, layers the forward pass never calls, and layers
whose output is not a floating-point tensor. The batch is what the model takes (a tensor,
token ids too; a tuple for ``model(*batch)``; a mapping for ``model(**batch)``): only the
fitted layers' outputs are measured, by hooks, so neither the input's nor the model output's
type matters (a dict or ``ModelOutput`` is fine).

**The method.** First every fitted weight gets an orthonormal init
(:class:`initlab.schemes.Orthogonal`, drawn from the parameter's own stream
:func:`initlab.rng.parameter_generator`, so the result depends only on the seed and the
parameter's name) and its bias is set to 0; MultiheadAttention's packed ``in_proj_weight``
gets one orthonormal block per query, key and value projection. Then, layer by layer in forward
order, the layer's output :math:`h` on the batch is measured and its weight rescaled

.. math::

    W \leftarrow W \cdot \frac{\sqrt{v^\ast}}{\operatorname{std}(h) + 10^{-8}}

until :math:`|\operatorname{Var}(h) - v^\ast| < \text{tol}` (the paper's test, with
:math:`v^\ast = 1`) or ``max_iter`` rescalings were made. The variance is over every element
of the output (batch, units and positions), on the layer's first call when it is called more
than once.

**The cost: two forward passes.** The layers before the current one are final, so its input
is fixed: one pass finds the layers and their order (changing nothing), and a second fits
them all inside the forward itself. A hook on each layer's first call measures the output
that call just produced, rescales the weight, and hands the rescaled output on, so the layers
after it see what a fresh pass would give them. A layer of a known affine kind (Linear, Conv,
ConvTranspose, Bilinear, HF Conv1D, MultiheadAttention) with a zero bias has an output
exactly proportional to its weight: one measurement gives the exact factor, and the output is
rescaled in place. Any other layer (a fixed nonzero bias, a subclass whose forward adds a norm,
a module with hooks of its own) is called again alone on the same inputs after each rescaling.
:attr:`LsuvLog.forward_passes`, :attr:`LsuvLog.layer_calls` and
:attr:`LsuvLog.forward_equivalents` say what a run spent.

With ``center_bias`` the bias also removes the output's mean, :math:`b \leftarrow
c\,(b - \bar h)` with :math:`c` the weight's factor, so the new output is exactly
:math:`c\,(h - \bar h)`. The reference LSUV-pytorch adds :math:`-c\,\bar h` to the bias,
which is the same when :math:`b = 0`; the PyPI package ``lsuv`` 0.3.0 corrects the std only.

The model keeps its train/eval mode; its buffers (BatchNorm running statistics) are restored
afterwards, so the passes leave no trace but the new weights. Call
``model.eval()`` first if it has dropout: in training mode every pass draws a new mask.

Reference: D. Mishkin and J. Matas, "All you need is a good init", ICLR 2016.
"""

from __future__ import annotations

from initlab.lsuv.fit import lsuv
from initlab.lsuv.log import LsuvLog, LsuvRow, LsuvSkip
from initlab.lsuv.targets import LSUV_LAYER_TYPES

__all__ = ["LSUV_LAYER_TYPES", "LsuvLog", "LsuvRow", "LsuvSkip", "lsuv"]
