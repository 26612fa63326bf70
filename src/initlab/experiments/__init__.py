"""Experiments: the search space, Optuna sweeps, their storage and results, and the demo."""
