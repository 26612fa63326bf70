"""initlab inside the tools people already use, each an optional extra loaded only when used.

* :mod:`initlab.integrations.keras`: every scheme as a ``keras.initializers.Initializer``
  (``pip install 'initlab[keras]'``);
* :mod:`initlab.integrations.lightning`: ``InitCallback`` and ``DoctorCallback`` for
  PyTorch Lightning (``initlab[lightning]``);
* :mod:`initlab.integrations.hf`: Hugging Face ``PreTrainedModel`` support (``initlab[hf]``);
* :func:`initlab.report.tensorboard.write_doctor`: the doctor's statistics in TensorBoard
  (``initlab[tensorboard]``).

Nothing here is imported by ``import initlab``.
"""
