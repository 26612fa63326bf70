"""Every bad input to the Python API gets one clear error (or warning, or note).

A table of cases, one per bad call seen or foreseen. Each case names the call, what it must
produce (an initlab error class, a warning class, or ``None`` for a call that must now work and
say something in its result) and the words the message must contain: the thing that was wrong,
so the user can find it. ``MESSAGE_CHECK`` keeps the check case-insensitive.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import initlab
import initlab.numpy as inp
from initlab import init
from initlab.doctor.inputs import file_batch, gaussian_batch, input_batch
from initlab.errors import ConfigError, InitlabError, ShapeError, UnknownNameError
from initlab.scale import materialize
from initlab.scale.materialize import MaterializeError


@dataclass(frozen=True)
class Case:
    """One bad call.

    Attributes:
        id: the test id.
        call: the call, given a fresh temporary directory.
        expect: the exception class, the warning class, or ``None`` (the call must succeed and
            ``text`` of its result must hold the words).
        words: what the message must contain (case-insensitive).
        text: for ``expect=None``, the text of the result to search.
    """

    id: str
    call: Callable[[Path], Any]
    expect: type[BaseException] | None
    words: tuple[str, ...]
    text: Callable[[Any], str] = str


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def batch() -> torch.Tensor:
    return torch.randn(16, 4, generator=torch.Generator().manual_seed(0))


def frozen() -> nn.Module:
    model = mlp()
    model.requires_grad_(False)
    return model


def nan_weights() -> nn.Module:
    model = mlp()
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan
    return model


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = mlp()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.body(x)
        return out, out.detach()


def meta_model() -> nn.Module:
    with torch.device("meta"):
        return nn.Linear(4, 2)


def long(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, dtype=torch.long)


def save_npy(tmp: Path, array: np.ndarray) -> Path:
    path = tmp / "batch.npy"
    np.save(path, array)
    return path


def save_npz(tmp: Path, **arrays: np.ndarray) -> Path:
    path = tmp / "batch.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def raising_factory() -> nn.Module:
    raise KeyError("missing config entry 'hidden'")


def checkpoint_plan(tmp: Path, *, strip_prefix: str = "", drop: str = "") -> initlab.Plan:
    """A checkpoint of ``mlp()`` saved from DataParallel (keys ``module.*``), minus ``drop``."""
    state = {f"module.{k}": v for k, v in mlp().state_dict().items() if k != drop}
    path = tmp / "model.pt"
    torch.save(state, path)
    return initlab.Plan(
        [initlab.rule(scheme="checkpoint", path=str(path), strip_prefix=strip_prefix)],
        default="auto",
    )


F = torch.zeros(4, 4)
RULE_CHECKPOINT_MISSING = "matched no parameter"

INIT_CASES = [
    Case(
        "kaiming_normal_-int",
        lambda _: init.kaiming_normal_(long(3, 3)),
        ConfigError,
        ("kaiming_normal_", "torch.int64", "floating"),
    ),
    Case(
        "kaiming_uniform_-int",
        lambda _: init.kaiming_uniform_(long(3, 3)),
        ConfigError,
        ("kaiming_uniform_", "torch.int64"),
    ),
    Case(
        "xavier_uniform_-int",
        lambda _: init.xavier_uniform_(long(3, 3).int()),
        ConfigError,
        ("xavier_uniform_", "torch.int32"),
    ),
    Case(
        "xavier_normal_-int",
        lambda _: init.xavier_normal_(long(3, 3)),
        ConfigError,
        ("xavier_normal_", "torch.int64"),
    ),
    Case("normal_-int", lambda _: init.normal_(long(3, 3)), ConfigError, ("normal_", "int64")),
    Case("uniform_-int", lambda _: init.uniform_(long(3, 3)), ConfigError, ("uniform_", "int64")),
    Case(
        "trunc_normal_-int",
        lambda _: init.trunc_normal_(long(3, 3)),
        ConfigError,
        ("trunc_normal_", "int64"),
    ),
    Case(
        "orthogonal_-int",
        lambda _: init.orthogonal_(long(3, 3)),
        ConfigError,
        ("orthogonal_", "int64"),
    ),
    Case(
        "sparse_-int", lambda _: init.sparse_(long(3, 3), 0.5), ConfigError, ("sparse_", "int64")
    ),
    Case(
        "lecun_normal_-int",
        lambda _: init.lecun_normal_(long(3, 3)),
        ConfigError,
        ("lecun_normal_", "int64"),
    ),
    Case(
        "variance_scaling_-int",
        lambda _: init.variance_scaling_(long(3, 3)),
        ConfigError,
        ("variance_scaling_", "int64"),
    ),
    Case(
        "kaiming_normal_-bool",
        lambda _: init.kaiming_normal_(torch.zeros(3, 3, dtype=torch.bool)),
        ConfigError,
        ("kaiming_normal_", "torch.bool"),
    ),
    Case(
        "kaiming_normal_-ndarray",
        lambda _: init.kaiming_normal_(np.zeros((3, 3))),
        ConfigError,
        ("tensor", "ndarray", "torch.from_numpy"),
    ),
    Case(
        "xavier_uniform_-list",
        lambda _: init.xavier_uniform_([[1.0, 2.0]]),
        ConfigError,
        ("tensor", "list"),
    ),
    Case(
        "kaiming_normal_-1d",
        lambda _: init.kaiming_normal_(torch.zeros(3)),
        ShapeError,
        ("(3,)", "2 dimensions"),
    ),
    Case(
        "xavier_uniform_-0d",
        lambda _: init.xavier_uniform_(torch.zeros(())),
        ShapeError,
        ("()", "2 dimensions"),
    ),
    Case(
        "lecun_uniform_-1d", lambda _: init.lecun_uniform_(torch.zeros(5)), ShapeError, ("(5,)",)
    ),
    Case(
        "orthogonal_-1d",
        lambda _: init.orthogonal_(torch.zeros(3)),
        ShapeError,
        ("orthogonal", "(3,)"),
    ),
    Case("eye_-3d", lambda _: init.eye_(torch.zeros(2, 2, 2)), ShapeError, ("(2, 2, 2)",)),
    Case("dirac_-2d", lambda _: init.dirac_(torch.zeros(2, 2)), ShapeError, ("(2, 2)",)),
    Case(
        "dirac_-groups",
        lambda _: init.dirac_(torch.zeros(4, 4, 3), groups=3),
        ShapeError,
        ("groups", "3"),
    ),
    Case(
        "sparse_-3d", lambda _: init.sparse_(torch.zeros(2, 2, 2), 0.5), ShapeError, ("(2, 2, 2)",)
    ),
    Case(
        "delta_orthogonal_-2d",
        lambda _: init.delta_orthogonal_(torch.zeros(4, 4)),
        ShapeError,
        ("(4, 4)",),
    ),
    Case(
        "kaiming_normal_-mode",
        lambda _: init.kaiming_normal_(F, mode="fan_inn"),  # type: ignore[arg-type]
        UnknownNameError,
        ("fan_inn", "fan_in"),
    ),
    Case(
        "kaiming_uniform_-nonlinearity",
        lambda _: init.kaiming_uniform_(F, nonlinearity="rleu"),
        UnknownNameError,
        ("rleu", "relu"),
    ),
    Case(
        "kaiming_normal_-a-nan",
        lambda _: init.kaiming_normal_(F, a=math.nan),
        ConfigError,
        ("a must be", "nan"),
    ),
    Case(
        "kaiming_uniform_-a-str",
        lambda _: init.kaiming_uniform_(F, a="x"),  # type: ignore[arg-type]
        ConfigError,
        ("a must be", "'x'"),
    ),
    Case(
        "xavier_uniform_-gain-inf",
        lambda _: init.xavier_uniform_(F, gain=math.inf),
        ConfigError,
        ("gain", "inf"),
    ),
    Case(
        "xavier_normal_-gain-none",
        lambda _: init.xavier_normal_(F, gain=None),  # type: ignore[arg-type]
        ConfigError,
        ("gain", "None"),
    ),
    Case(
        "orthogonal_-gain-nan",
        lambda _: init.orthogonal_(F, gain=math.nan),
        ConfigError,
        ("gain", "nan"),
    ),
    Case("normal_-std-negative", lambda _: init.normal_(F, std=-1.0), ConfigError, ("std", "-1")),
    Case(
        "normal_-mean-nan", lambda _: init.normal_(F, mean=math.nan), ConfigError, ("mean", "nan")
    ),
    Case(
        "uniform_-a-above-b",
        lambda _: init.uniform_(F, a=2.0, b=1.0),
        ConfigError,
        ("a <= b", "a=2.0"),
    ),
    Case(
        "trunc_normal_-a-above-b",
        lambda _: init.trunc_normal_(F, a=2.0, b=-2.0),
        ConfigError,
        ("a", "b", "2.0"),
    ),
    Case("sparse_-sparsity", lambda _: init.sparse_(F, 1.5), ConfigError, ("sparsity", "1.5")),
    Case(
        "constant_-val-str",
        lambda _: init.constant_(F, "x"),  # type: ignore[arg-type]
        ConfigError,
        ("val", "'x'"),
    ),
    Case(
        "variance_scaling_-scale",
        lambda _: init.variance_scaling_(F, scale=-1.0),
        ConfigError,
        ("scale", "-1"),
    ),
    Case(
        "variance_scaling_-distribution",
        lambda _: init.variance_scaling_(F, distribution="gauss"),  # type: ignore[arg-type]
        UnknownNameError,
        ("distribution", "gauss"),
    ),
    Case(
        "kaiming_normal_-generator-str",
        lambda _: init.kaiming_normal_(F, generator="a"),  # type: ignore[arg-type]
        ConfigError,
        ("generator", "'a'", "torch.Generator"),
    ),
    Case(
        "normal_-generator-numpy",
        lambda _: init.normal_(F, generator=np.random.default_rng(0)),  # type: ignore[arg-type]
        ConfigError,
        ("generator", "torch.Generator"),
    ),
    Case(
        "orthogonal_-generator-int",
        lambda _: init.orthogonal_(F, generator=3),  # type: ignore[arg-type]
        ConfigError,
        ("generator", "3"),
    ),
    Case(
        "kaiming_normal_-layout",
        lambda _: init.kaiming_normal_(F, layout="tf"),  # type: ignore[arg-type]
        UnknownNameError,
        ("layout", "'tf'"),
    ),
    Case(
        "kaiming_normal_-groups-0",
        lambda _: init.kaiming_normal_(F, groups=0),
        ShapeError,
        ("groups", "0"),
    ),
    Case(
        "xavier_uniform_-groups-divide",
        lambda _: init.xavier_uniform_(F, groups=3),
        ShapeError,
        ("groups", "3"),
    ),
    Case(
        "calculate_gain-unknown",
        lambda _: init.calculate_gain("rleu"),
        UnknownNameError,
        ("rleu", "relu"),
    ),
    Case(
        "calculate_gain-param",
        lambda _: init.calculate_gain("leaky_relu", "x"),  # type: ignore[arg-type]
        ConfigError,
        ("negative_slope", "x"),
    ),
    Case("gain-unknown", lambda _: initlab.gain("swishy"), UnknownNameError, ("swishy",)),
    Case(
        "gain-kind",
        lambda _: initlab.gain("relu", kind="exact"),  # type: ignore[arg-type]
        UnknownNameError,
        ("exact", "second_moment"),
    ),
    Case(
        "gain-param-nan",
        lambda _: initlab.gain("leaky_relu", math.nan),
        ConfigError,
        ("leaky_relu", "nan"),
    ),
]

NUMPY_CASES = [
    Case(
        "numpy-torch-layout-1d",
        lambda _: inp.he_normal((3,), layout="torch"),
        ShapeError,
        ("(3,)", "2 dimensions"),
    ),
    Case("numpy-orthogonal-1d", lambda _: inp.orthogonal((3,)), ShapeError, ("(3,)",)),
    Case(
        "numpy-seed-float",
        lambda _: inp.he_normal((4, 4), seed=1.5),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "1.5", "integer"),
    ),
    Case(
        "numpy-seed-str",
        lambda _: inp.he_normal((4, 4), seed="a"),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "'a'"),
    ),
    Case(
        "numpy-seed-bool",
        lambda _: inp.he_normal((4, 4), seed=True),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "True"),
    ),
    Case(
        "numpy-rng-and-seed",
        lambda _: inp.he_normal((4, 4), rng=np.random.default_rng(0), seed=0),
        ConfigError,
        ("rng", "seed"),
    ),
    Case(
        "numpy-rng-torch",
        lambda _: inp.he_normal((4, 4), rng=torch.Generator()),  # type: ignore[arg-type]
        ConfigError,
        ("rng", "numpy.random.Generator"),
    ),
    Case("numpy-negative-size", lambda _: inp.he_normal((4, -1)), ShapeError, ("(4, -1)",)),
    Case(
        "numpy-float-size",
        lambda _: inp.he_normal((4.5, 4)),  # type: ignore[arg-type]
        ShapeError,
        ("4.5", "integer"),
    ),
    Case(
        "numpy-shape-str",
        lambda _: inp.he_normal("44"),  # type: ignore[arg-type]
        ShapeError,
        ("shape", "'44'"),
    ),
    Case(
        "numpy-int-dtype",
        lambda _: inp.he_normal((4, 4), dtype=np.int32),
        ConfigError,
        ("dtype", "int32", "floating"),
    ),
    Case(
        "numpy-unknown-scheme",
        lambda _: inp.sample("he_normall", (4, 4)),
        UnknownNameError,
        ("he_normall", "he_normal"),
    ),
    Case("numpy-unknown-param", lambda _: inp.he_normal((4, 4), stdd=1.0), ConfigError, ("stdd",)),
    Case(
        "numpy-groups-float",
        lambda _: inp.he_normal((4, 4), groups=1.5),
        ShapeError,
        ("groups", "1.5"),
    ),
]

SCHEME_CASES = [
    Case(
        "get-unknown",
        lambda _: initlab.get("he_normall"),
        UnknownNameError,
        ("he_normall", "he_normal"),
    ),
    Case(
        "get-not-a-name",
        lambda _: initlab.get(42),  # type: ignore[arg-type]
        UnknownNameError,
        ("42",),
    ),
    Case(
        "get-std-nan", lambda _: initlab.get("normal", std=math.nan), ConfigError, ("std", "nan")
    ),
    Case(
        "get-std-negative", lambda _: initlab.get("normal", std=-1.0), ConfigError, ("std", "-1")
    ),
    Case(
        "get-uniform-inf", lambda _: initlab.get("uniform", a=-math.inf), ConfigError, ("a", "inf")
    ),
    Case(
        "get-mode", lambda _: initlab.get("he_normal", mode="x"), UnknownNameError, ("mode", "'x'")
    ),
    Case(
        "get-unknown-param",
        lambda _: initlab.get("he_normal", foo=1),
        ConfigError,
        ("foo", "he_normal"),
    ),
    Case(
        "get-scale-zero",
        lambda _: initlab.get("variance_scaling", scale=0),
        ConfigError,
        ("scale", "0"),
    ),
    Case(
        "get-truncated-bounds",
        lambda _: initlab.get("truncated_normal", a=3.0, b=-3.0),
        ConfigError,
        ("a", "b"),
    ),
    Case(
        "get-gain-str", lambda _: initlab.get("orthogonal", gain="2"), ConfigError, ("gain", "'2'")
    ),
    Case(
        "get-sparsity-negative",
        lambda _: initlab.get("sparse", sparsity=-0.1),
        ConfigError,
        ("sparsity", "-0.1"),
    ),
    Case("get-a-bool", lambda _: initlab.get("he_normal", a=True), ConfigError, ("a", "True")),
    Case(
        "from_config-no-scheme",
        lambda _: initlab.from_config({"mode": "fan_in"}),
        ConfigError,
        ("scheme", "mode"),
    ),
    Case(
        "from_config-not-mapping",
        lambda _: initlab.from_config("he_normal"),  # type: ignore[arg-type]
        ConfigError,
        ("mapping", "'he_normal'"),
    ),
    Case(
        "from_config-bad-name",
        lambda _: initlab.from_config({"scheme": "glorot_unifrom"}),
        UnknownNameError,
        ("glorot_unifrom", "glorot_uniform"),
    ),
    Case(
        "from_config-inf",
        lambda _: initlab.from_config({"scheme": "normal", "std": math.inf}),
        ConfigError,
        ("std", "inf"),
    ),
]

FAN_CASES = [
    Case(
        "compute_fans-layout",
        lambda _: initlab.compute_fans((4, 4), layout="tf"),  # type: ignore[arg-type]
        UnknownNameError,
        ("layout", "'tf'"),
    ),
    Case(
        "compute_fans-groups-0",
        lambda _: initlab.compute_fans((4, 4), groups=0),
        ShapeError,
        ("groups", "0"),
    ),
    Case(
        "compute_fans-groups-float",
        lambda _: initlab.compute_fans((4, 4), groups=1.5),  # type: ignore[arg-type]
        ShapeError,
        ("groups", "1.5"),
    ),
    Case(
        "compute_fans-jax-axis",
        lambda _: initlab.compute_fans((4, 4, 3), layout="jax", in_axis=5),
        ShapeError,
        ("in_axis", "5"),
    ),
    Case("compute_fans-torch-1d", lambda _: initlab.compute_fans((3,)), ShapeError, ("(3,)",)),
    Case(
        "compute_fans-int",
        lambda _: initlab.compute_fans(5),  # type: ignore[arg-type]
        ShapeError,
        ("shape", "5"),
    ),
    Case(
        "compute_fans-negative",
        lambda _: initlab.compute_fans((4, -2)),
        ShapeError,
        ("negative", "(4, -2)"),
    ),
    Case(
        "fan_in-str-size",
        lambda _: initlab.fan_in((4, "a")),  # type: ignore[arg-type]
        ShapeError,
        ("shape", "'a'"),
    ),
]

RULE_CASES = [
    Case(
        "rule-types-int",
        lambda _: initlab.rule(types=42, scheme="zeros"),  # type: ignore[arg-type]
        ConfigError,
        ("types", "42", "nn.Linear"),
    ),
    Case(
        "rule-types-mixed",
        lambda _: initlab.rule(types=[nn.Linear, 3.0], scheme="zeros"),  # type: ignore[list-item]
        ConfigError,
        ("types", "3.0"),
    ),
    Case(
        "rule-role",
        lambda _: initlab.rule(role="weights", scheme="zeros"),
        UnknownNameError,
        ("weights", "weight"),
    ),
    Case(
        "rule-scheme",
        lambda _: initlab.rule("*.weight", "he_normall"),
        UnknownNameError,
        ("he_normall", "he_normal"),
    ),
    Case("rule-no-scheme", lambda _: initlab.rule("*.weight"), ConfigError, ("scheme",)),
    Case(
        "rule-pattern-int",
        lambda _: initlab.rule(3, "zeros"),  # type: ignore[arg-type]
        ConfigError,
        ("pattern", "3"),
    ),
    Case(
        "rule-regex",
        lambda _: initlab.rule(regex="(", scheme="zeros"),
        ConfigError,
        ("regex", "'('"),
    ),
    Case(
        "rule-multiplier-nan",
        lambda _: initlab.rule(scheme="zeros", multiplier=math.nan),
        ConfigError,
        ("multiplier", "nan"),
    ),
    Case(
        "rule-multiplier-str",
        lambda _: initlab.rule(scheme="zeros", multiplier="x"),  # type: ignore[arg-type]
        ConfigError,
        ("multiplier", "'x'"),
    ),
    Case(
        "rule-multiplier-bool",
        lambda _: initlab.rule(scheme="zeros", multiplier=True),
        ConfigError,
        ("multiplier", "True"),
    ),
    Case(
        "rule-depth-negative",
        lambda _: initlab.rule(scheme="zeros", depth=-1),
        ConfigError,
        ("depth", "-1", ">= 0"),
    ),
    Case(
        "rule-depth-pair-negative",
        lambda _: initlab.rule(scheme="zeros", depth=[-2, 1]),
        ConfigError,
        ("depth", "-2"),
    ),
    Case(
        "rule-depth-reversed",
        lambda _: initlab.rule(scheme="zeros", depth=[3, 1]),
        ConfigError,
        ("depth", "[3, 1]"),
    ),
    Case(
        "rule-depth-float",
        lambda _: initlab.rule(scheme="zeros", depth=1.5),  # type: ignore[arg-type]
        ConfigError,
        ("depth", "1.5"),
    ),
    Case(
        "rule-fans",
        lambda _: initlab.rule(scheme="zeros", fans="keras"),  # type: ignore[arg-type]
        UnknownNameError,
        ("fans", "keras"),
    ),
    Case(
        "rule-keep-params",
        lambda _: initlab.rule("*", "keep", std=1.0),
        ConfigError,
        ("keep", "std"),
    ),
    Case(
        "plan-rule-not-rule",
        lambda _: initlab.Plan([3]),  # type: ignore[list-item]
        ConfigError,
        ("rule 0", "int", "initlab.rule"),
    ),
    Case(
        "plan-single-rule",
        lambda _: initlab.Plan(initlab.rule(scheme="zeros")),  # type: ignore[arg-type]
        ConfigError,
        ("rules", "list"),
    ),
    Case(
        "plan-default",
        lambda _: initlab.Plan(default="he_normall"),
        UnknownNameError,
        ("he_normall",),
    ),
    Case(
        "plan-default-int",
        lambda _: initlab.Plan(default=3),  # type: ignore[arg-type]
        ConfigError,
        ("default", "3"),
    ),
    Case(
        "resolve-not-module",
        lambda _: initlab.Plan().resolve("model"),  # type: ignore[arg-type]
        ConfigError,
        ("model", "str", "nn.Module"),
    ),
    Case(
        "apply-none",
        lambda _: initlab.Plan().apply(None),  # type: ignore[arg-type]
        ConfigError,
        ("model", "None"),
    ),
    Case(
        "apply-seed-none",
        lambda _: initlab.Plan().apply(mlp(), seed=None),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "None"),
    ),
    Case(
        "apply-seed-str",
        lambda _: initlab.Plan().apply(mlp(), seed="a"),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "'a'"),
    ),
    Case(
        "apply-seed-float",
        lambda _: initlab.Plan().apply(mlp(), seed=1.5),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "1.5"),
    ),
    Case(
        "apply-seed-bool",
        lambda _: initlab.Plan().apply(mlp(), seed=True),
        ConfigError,
        ("seed", "True"),
    ),
    Case(
        "apply-stream",
        lambda _: initlab.Plan().apply(mlp(), stream="ctr"),  # type: ignore[arg-type]
        UnknownNameError,
        ("stream", "counter"),
    ),
    Case(
        "apply-meta",
        lambda _: initlab.Plan().apply(meta_model()),
        ConfigError,
        ("meta", "materialize", "to_empty"),
    ),
    Case(
        "from_config-unknown-field",
        lambda _: initlab.Plan.from_config({"rulez": []}),
        ConfigError,
        ("rulez",),
    ),
    Case(
        "from_config-bad-scheme",
        lambda _: initlab.Plan.from_config({"rules": [{"scheme": "he_normall"}]}),
        InitlabError,
        ("rules[0]", "he_normall"),
    ),
    Case(
        "plan-from_config-not-mapping",
        lambda _: initlab.Plan.from_config(["x"]),  # type: ignore[arg-type]
        ConfigError,
        ("plan config", "list"),
    ),
    Case(
        "from_file-suffix",
        lambda tmp: initlab.Plan.from_file(tmp / "plan.txt"),
        ConfigError,
        ("plan.txt", ".yaml"),
    ),
    Case(
        "from_file-missing",
        lambda tmp: initlab.Plan.from_file(tmp / "plan.yaml"),
        ConfigError,
        ("plan.yaml",),
    ),
]


def _bad_yaml(tmp: Path) -> initlab.Plan:
    path = tmp / "plan.yaml"
    path.write_text("rules: [\n  - {scheme: zeros\n")
    return initlab.Plan.from_file(path)


RULE_CASES.append(Case("from_file-bad-yaml", _bad_yaml, ConfigError, ("plan.yaml",)))

MODEL_CASES = [
    Case(
        "init_model-none",
        lambda _: initlab.init_model(mlp(), None),  # type: ignore[arg-type]
        ConfigError,
        ("plan", "None", "preset"),
    ),
    Case(
        "init_model-not-module",
        lambda _: initlab.init_model("model"),  # type: ignore[arg-type]
        ConfigError,
        ("model", "str"),
    ),
    Case(
        "init_model-unknown-preset",
        lambda _: initlab.init_model(mlp(), "kaimnig"),
        UnknownNameError,
        ("kaimnig", "kaiming"),
    ),
    Case(
        "init_model-seed-none",
        lambda _: initlab.init_model(mlp(), seed=None),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "None"),
    ),
    Case(
        "init_model-option",
        lambda _: initlab.init_model(mlp(), "kaiming", foo=1),
        ConfigError,
        ("foo",),
    ),
    Case(
        "audit-preset-name",
        lambda _: initlab.audit(mlp(), "kaiming"),  # type: ignore[arg-type]
        None,
        ("nothing to report",),
    ),
    Case(
        "audit-not-module",
        lambda _: initlab.audit("model"),  # type: ignore[arg-type]
        ConfigError,
        ("model", "str"),
    ),
    Case(
        "audit-plan-int",
        lambda _: initlab.audit(mlp(), 3),  # type: ignore[arg-type]
        ConfigError,
        ("plan", "3"),
    ),
    Case(
        "preset-unknown",
        lambda _: initlab.preset("kaimnig"),
        UnknownNameError,
        ("kaimnig", "kaiming"),
    ),
    Case(
        "preset-not-str",
        lambda _: initlab.preset(3),  # type: ignore[arg-type]
        UnknownNameError,
        ("preset", "3"),
    ),
    Case(
        "preset-n_layer",
        lambda _: initlab.preset("gpt2", n_layer=0),
        ConfigError,
        ("n_layer", "0"),
    ),
    Case(
        "preset-option",
        lambda _: initlab.preset("kaiming", mlp(), bogus=1),
        ConfigError,
        ("bogus",),
    ),
    Case("table-no-parameters", lambda _: initlab.Plan().resolve(nn.ReLU()), None, ("parameter",)),
]

DOCTOR_CASES = [
    Case(
        "doctor-not-module",
        lambda _: initlab.doctor("model", batch()),  # type: ignore[arg-type]
        ConfigError,
        ("model", "str"),
    ),
    Case(
        "doctor-numpy-batch",
        lambda _: initlab.doctor(mlp(), np.zeros((4, 4))),  # type: ignore[arg-type]
        ConfigError,
        ("batch", "ndarray", "torch.from_numpy"),
    ),
    Case(
        "doctor-empty-batch",
        lambda _: initlab.doctor(mlp(), torch.zeros(0, 4)),
        ConfigError,
        ("0 examples", "(0, 4)"),
    ),
    Case(
        "doctor-empty-list",
        lambda _: initlab.doctor(mlp(), []),
        ConfigError,
        ("batch", "no torch.Tensor"),
    ),
    Case(
        "doctor-nan-batch",
        lambda _: initlab.doctor(mlp(), torch.full((4, 4), math.nan)),
        ConfigError,
        ("nan",),
    ),
    Case(
        "doctor-nan-weights",
        lambda _: initlab.doctor(nan_weights(), batch(), jacobian=False),
        None,
        ("nan", "('0',)"),
        lambda report: " ".join(f"{f.code} {f.title} {f.layers}" for f in report.findings),
    ),
    Case(
        "doctor-tuple-output",
        lambda _: initlab.doctor(TupleOut(), batch(), jacobian=False),
        None,
        ("body.0",),
        lambda report: " ".join(r.name for r in report.records),
    ),
    Case(
        "doctor-frozen",
        lambda _: initlab.doctor(frozen(), batch(), jacobian=False),
        None,
        ("requires_grad", "gradient"),
        lambda report: " ".join(report.skipped) + " ".join(f.title for f in report.findings),
    ),
    Case(
        "doctor-loss-no-target",
        lambda _: initlab.doctor(mlp(), batch(), loss_fn=nn.functional.mse_loss),
        ConfigError,
        ("loss_fn", "target"),
    ),
    Case(
        "doctor-target-no-loss",
        lambda _: initlab.doctor(mlp(), batch(), target=torch.zeros(16, 2)),
        ConfigError,
        ("target", "loss_fn"),
    ),
    Case(
        "doctor-target-batch",
        lambda _: initlab.doctor(mlp(), batch(), nn.functional.mse_loss, torch.zeros(5, 2)),
        ConfigError,
        ("target", "(5, 2)", "16"),
    ),
    Case(
        "doctor-loss-fails",
        lambda _: initlab.doctor(
            mlp(), batch(), nn.functional.cross_entropy, torch.zeros(16, 7, 3)
        ),
        InitlabError,
        ("loss_fn", "(16, 7, 3)"),
    ),
    Case(
        "doctor-thresholds-dict",
        lambda _: initlab.doctor(mlp(), batch(), thresholds={"dead": 0.5}),  # type: ignore[arg-type]
        ConfigError,
        ("thresholds", "dict", "Thresholds("),
    ),
    Case(
        "doctor-seed-none",
        lambda _: initlab.doctor(mlp(), batch(), seed=None),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "None"),
    ),
    Case(
        "doctor-output_fn",
        lambda _: initlab.doctor(mlp(), batch(), output_fn=3),  # type: ignore[arg-type]
        ConfigError,
        ("output_fn",),
    ),
    Case(
        "doctor-meta",
        lambda _: initlab.doctor(meta_model(), batch()),
        ConfigError,
        ("meta", "materialize"),
    ),
    Case(
        "thresholds-dict",
        lambda _: initlab.Thresholds({"dead": 0.5}),  # type: ignore[arg-type]
        ConfigError,
        ("vanishing", "dict", "Thresholds(dead=0.5)"),
    ),
    Case(
        "thresholds-dead",
        lambda _: initlab.Thresholds(dead=2),
        ConfigError,
        ("dead", "2", "[0, 1]"),
    ),
    Case(
        "thresholds-collapse",
        lambda _: initlab.Thresholds(collapse=-0.1),
        ConfigError,
        ("collapse", "-0.1"),
    ),
    Case(
        "thresholds-vanishing",
        lambda _: initlab.Thresholds(vanishing=-1),
        ConfigError,
        ("vanishing", "-1"),
    ),
    Case(
        "thresholds-exploding",
        lambda _: initlab.Thresholds(exploding=0.5),
        ConfigError,
        ("exploding", "0.5", "> 1"),
    ),
    Case(
        "thresholds-min_layers",
        lambda _: initlab.Thresholds(min_layers=0),
        ConfigError,
        ("min_layers", "0"),
    ),
    Case(
        "thresholds-min_layers-float",
        lambda _: initlab.Thresholds(min_layers=2.5),  # type: ignore[arg-type]
        ConfigError,
        ("min_layers", "2.5"),
    ),
    Case(
        "thresholds-gain_tolerance",
        lambda _: initlab.Thresholds(gain_tolerance=math.nan),
        ConfigError,
        ("gain_tolerance", "nan"),
    ),
    Case(
        "thresholds-mismatch_loss",
        lambda _: initlab.Thresholds(mismatch_loss=1.5),
        ConfigError,
        ("mismatch_loss", "1.5"),
    ),
]

LSUV_CASES = [
    Case("lsuv-tol", lambda _: initlab.lsuv(mlp(), batch(), tol=0), ConfigError, ("tol", "0")),
    Case(
        "lsuv-tol-bool",
        lambda _: initlab.lsuv(mlp(), batch(), tol=True),
        ConfigError,
        ("tol", "True"),
    ),
    Case(
        "lsuv-max_iter",
        lambda _: initlab.lsuv(mlp(), batch(), max_iter=-1),
        ConfigError,
        ("max_iter", "-1"),
    ),
    Case(
        "lsuv-target_var",
        lambda _: initlab.lsuv(mlp(), batch(), target_var=math.nan),
        ConfigError,
        ("target_var", "nan"),
    ),
    Case(
        "lsuv-empty-batch",
        lambda _: initlab.lsuv(mlp(), torch.zeros(0, 4)),
        ConfigError,
        ("0 examples",),
    ),
    Case(
        "lsuv-seed-none",
        lambda _: initlab.lsuv(mlp(), batch(), seed=None),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "None"),
    ),
    Case(
        "lsuv-seed-float",
        lambda _: initlab.lsuv(mlp(), batch(), seed=0.5),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "0.5"),
    ),
    Case(
        "lsuv-not-module",
        lambda _: initlab.lsuv("model", batch()),  # type: ignore[arg-type]
        ConfigError,
        ("model", "str"),
    ),
]

SCALE_CASES = [
    Case(
        "materialize-preset-name",
        lambda _: materialize(lambda: nn.Linear(4, 2), "kaiming"),  # type: ignore[arg-type]
        None,
        ("Linear",),
    ),
    Case(
        "materialize-plan-none",
        lambda _: materialize(lambda: nn.Linear(4, 2), None),  # type: ignore[arg-type]
        ConfigError,
        ("plan", "None"),
    ),
    Case(
        "materialize-device",
        lambda _: materialize(lambda: nn.Linear(4, 2), initlab.Plan(), device="nosuch"),
        ConfigError,
        ("device", "'nosuch'"),
    ),
    Case(
        "materialize-int-dtype",
        lambda _: materialize(lambda: nn.Linear(4, 2), initlab.Plan(), dtype=torch.int64),
        ConfigError,
        ("dtype", "torch.int64", "floating"),
    ),
    Case(
        "materialize-str-dtype",
        lambda _: materialize(lambda: nn.Linear(4, 2), initlab.Plan(), dtype="float32"),  # type: ignore[arg-type]
        ConfigError,
        ("dtype", "'float32'", "torch.float32"),
    ),
    Case(
        "materialize-seed-none",
        lambda _: materialize(lambda: nn.Linear(4, 2), initlab.Plan(), seed=None),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "None"),
    ),
    Case(
        "materialize-seed-str",
        lambda _: materialize(lambda: nn.Linear(4, 2), initlab.Plan(), seed="a"),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "'a'"),
    ),
    Case(
        "materialize-factory-raises",
        lambda _: materialize(raising_factory, initlab.Plan()),
        MaterializeError,
        ("raising_factory", "KeyError", "hidden", "the factory raised"),
    ),
    Case(
        "materialize-not-callable",
        lambda _: materialize(42, initlab.Plan()),  # type: ignore[arg-type]
        ConfigError,
        ("factory", "int"),
    ),
    Case(
        "materialize-returns-int",
        lambda _: materialize(lambda: 3, initlab.Plan()),  # type: ignore[arg-type, return-value]
        MaterializeError,
        ("int", "nn.Module"),
    ),
    Case(
        "materialize-stream",
        lambda _: materialize(lambda: nn.Linear(4, 2), initlab.Plan(), stream="x"),  # type: ignore[arg-type]
        UnknownNameError,
        ("stream", "'x'"),
    ),
]

INPUT_CASES = [
    Case(
        "file_batch-empty-npy",
        lambda tmp: file_batch(save_npy(tmp, np.zeros((0, 4)))),
        ConfigError,
        ("batch.npy", "0 examples", "(0, 4)"),
    ),
    Case(
        "file_batch-scalar-npy",
        lambda tmp: file_batch(save_npy(tmp, np.array(1.0))),
        ConfigError,
        ("batch.npy", "scalar"),
    ),
    Case(
        "file_batch-npz-no-x",
        lambda tmp: file_batch(save_npz(tmp, inputs=np.zeros((4, 4)), labels=np.zeros(4))),
        ConfigError,
        ("batch.npz", "'x'", "inputs", "labels"),
    ),
    Case(
        "file_batch-npz-empty",
        lambda tmp: file_batch(save_npz(tmp)),
        ConfigError,
        ("batch.npz", "no array"),
    ),
    Case(
        "file_batch-missing",
        lambda tmp: file_batch(tmp / "nothing.npy"),
        ConfigError,
        ("nothing.npy", "no such file"),
    ),
    Case(
        "file_batch-strings",
        lambda tmp: file_batch(save_npy(tmp, np.array([["a"]]))),
        ConfigError,
        ("batch.npy", "dtype"),
    ),
    Case(
        "file_batch-shape",
        lambda tmp: file_batch(save_npy(tmp, np.zeros((4, 4))), (8, 4)),
        ConfigError,
        ("4 examples", "8"),
    ),
    Case(
        "file_batch-nan",
        lambda tmp: file_batch(save_npy(tmp, np.full((4, 4), np.nan))),
        ConfigError,
        ("batch.npy", "nan"),
    ),
    Case(
        "input_batch-no-shape", lambda _: input_batch(None, None), ConfigError, ("--input-shape",)
    ),
    Case(
        "gaussian_batch-negative",
        lambda _: gaussian_batch((4, -1)),
        ShapeError,
        ("shape", "(4, -1)"),
    ),
    Case(
        "gaussian_batch-seed",
        lambda _: gaussian_batch((4, 4), seed=None),  # type: ignore[arg-type]
        ConfigError,
        ("seed", "None"),
    ),
]

CHECKPOINT_CASES = [
    Case(
        "checkpoint-missing-keys",
        lambda tmp: checkpoint_plan(tmp, strip_prefix="module.", drop="2.bias").apply(mlp()),
        UserWarning,
        ("2.bias", "not in checkpoint"),
    ),
    Case(
        "checkpoint-wrong-strip_prefix",
        lambda tmp: checkpoint_plan(tmp, strip_prefix="model.").apply(mlp()),
        UserWarning,
        (RULE_CHECKPOINT_MISSING, "'module.'", "strip_prefix"),
    ),
    Case(
        "checkpoint-suffix",
        lambda _: initlab.get("checkpoint", path="weights.txt"),
        ConfigError,
        ("weights.txt", ".safetensors"),
    ),
    Case(
        "checkpoint-missing-file",
        lambda tmp: initlab.Plan(
            [initlab.rule(scheme="checkpoint", path=str(tmp / "w.pt"))]
        ).resolve(mlp()),
        ConfigError,
        ("w.pt", "no such file"),
    ),
]

CASES = (
    INIT_CASES
    + NUMPY_CASES
    + SCHEME_CASES
    + FAN_CASES
    + RULE_CASES
    + MODEL_CASES
    + DOCTOR_CASES
    + LSUV_CASES
    + SCALE_CASES
    + INPUT_CASES
    + CHECKPOINT_CASES
)


def _check_words(message: str, words: tuple[str, ...]) -> None:
    missing = [word for word in words if word.lower() not in message.lower()]
    assert not missing, f"message lacks {missing}: {message}"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    if case.expect is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # only the result matters here
            result = case.call(tmp_path)
        _check_words(case.text(result), case.words)
    elif issubclass(case.expect, Warning):
        with pytest.warns(case.expect) as caught:
            case.call(tmp_path)
        _check_words(" ".join(str(w.message) for w in caught), case.words)
    else:
        with pytest.raises(case.expect) as raised:
            case.call(tmp_path)
        assert isinstance(raised.value, InitlabError), type(raised.value)
        _check_words(str(raised.value), case.words)


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 90
