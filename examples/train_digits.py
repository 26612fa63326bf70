"""Train an MLP on scikit-learn's digits with an init plan and every regularizer at once.

Run: ``python examples/train_digits.py``.
"""

from __future__ import annotations

import initlab
from initlab.train import MLP, Penalty, StepDecay, TrainConfig, fit, load_digits


def main() -> None:
    data = load_digits(seed=0)
    model = MLP(64, 10, depth=3, width=128, dropout=0.1)
    initlab.init_model(model, "kaiming", seed=0)

    config = TrainConfig(
        epochs=10,
        optimizer="sgd",
        lr=0.05,
        weight_decay=1e-4,
        penalties=Penalty(l1=1e-5),
        schedule=StepDecay(rate=0.5, step=4),
        clip_norm=1.0,
        seed=0,
        device="cpu",
    )
    history = fit(model, data, config)
    last = history.epochs[-1]
    print(f"{history.status}: val accuracy {last.val_accuracy:.3f} after {len(history.epochs)}")


if __name__ == "__main__":
    main()
