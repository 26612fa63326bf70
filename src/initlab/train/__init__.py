"""Training practices for the comparisons: data, models, regularization, schedules, the loop.

``import initlab.train`` loads torch and NumPy only; scikit-learn (built-in datasets), kornia
(augmentation) and Pillow (image folders) load inside the features that use them.
"""

from __future__ import annotations

from initlab.train.augment import Augment
from initlab.train.config import EarlyStopping, TrainConfig
from initlab.train.data import DataError, Dataset, Split, Standardizer, from_arrays
from initlab.train.datasets import (
    load_breast_cancer,
    load_dataset,
    load_digits,
    load_wine,
    teacher_student,
)
from initlab.train.files import from_csv, from_image_folder, from_npz
from initlab.train.history import EpochRecord, History
from initlab.train.loop import evaluate, fit
from initlab.train.models import MLP, ResNet, SmallCNN
from initlab.train.regularize import DECAY_RULES, Penalty, decay_split, parameter_groups
from initlab.train.schedule import (
    ConstantRate,
    Exponential,
    OneCycle,
    ReduceOnPlateau,
    Schedule,
    StepDecay,
    WarmupCosine,
    schedule,
)

__all__ = [
    "DECAY_RULES",
    "MLP",
    "Augment",
    "ConstantRate",
    "DataError",
    "Dataset",
    "EarlyStopping",
    "EpochRecord",
    "Exponential",
    "History",
    "OneCycle",
    "Penalty",
    "ReduceOnPlateau",
    "ResNet",
    "Schedule",
    "SmallCNN",
    "Split",
    "Standardizer",
    "StepDecay",
    "TrainConfig",
    "WarmupCosine",
    "decay_split",
    "evaluate",
    "fit",
    "from_arrays",
    "from_csv",
    "from_image_folder",
    "from_npz",
    "load_breast_cancer",
    "load_dataset",
    "load_digits",
    "load_wine",
    "parameter_groups",
    "schedule",
    "teacher_student",
]
