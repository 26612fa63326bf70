"""Keras 3 integration: fans in Keras' layout, serialization round trips, seed semantics."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from initlab.errors import ConfigError, UnknownNameError
from initlab.schemes import get, scheme_aliases

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")
ik = pytest.importorskip("initlab.integrations.keras")

# Keras' torch backend turns tensors into arrays with np.array(tensor), which NumPy 2 flags
# because torch.Tensor.__array__ takes no copy keyword; nothing initlab can change.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

README_SNIPPET = """\
import os
os.environ["KERAS_BACKEND"] = "torch"  # before keras is first imported
import keras
from initlab.integrations.keras import HeNormal, initializer

model = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Conv2D(16, 3, activation="relu", kernel_initializer=HeNormal(seed=0)),
    keras.layers.Flatten(),
    keras.layers.Dense(10, kernel_initializer=initializer("glorot_uniform", seed=1)),
])
model.save("model.keras")
restored = keras.models.load_model("model.keras")
print(restored.layers[0].kernel_initializer)  # HeNormal(he_normal(), seed=0)
"""


def _std_tolerance(n: int) -> float:
    # The sample std of n i.i.d. values of std s and kurtosis k has sd ~ s * sqrt((k - 1) / 4n);
    # k <= 3 for every law here (normal 3, uniform 1.8, truncated normal < 3), so 5 / sqrt(2n)
    # (relative) is a 5-sigma bound. Seeds are fixed, so the test is deterministic anyway.
    return 5.0 / math.sqrt(2.0 * n)


def _kernel(layer: Any) -> np.ndarray[Any, Any]:
    return np.asarray(keras.ops.convert_to_numpy(layer.kernel), dtype=np.float64)


def _model() -> Any:
    return keras.Sequential(
        [
            keras.Input((8, 8, 16)),
            keras.layers.Conv2D(32, 3, kernel_initializer=ik.XavierUniform(seed=1)),
            keras.layers.Flatten(),
            keras.layers.Dense(
                64, kernel_initializer=ik.initializer("kaiming_normal", mode="fan_out", seed=2)
            ),
        ]
    )


def _initialized_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if hasattr(layer, "kernel_initializer")]


# --- fans and values ------------------------------------------------------------------------


def test_model_kernels_have_the_scheme_std_in_keras_layout() -> None:
    conv, dense = _initialized_layers(_model())
    conv_kernel, dense_kernel = _kernel(conv), _kernel(dense)
    assert conv_kernel.shape == (3, 3, 16, 32)  # fan_in = 9 * 16, fan_out = 9 * 32
    assert dense_kernel.shape == (1152, 64)
    expected = {
        "conv": (conv_kernel, math.sqrt(2.0 / (144 + 288))),
        "dense": (dense_kernel, math.sqrt(2.0 / 64)),
    }
    for name, (kernel, std) in expected.items():
        tolerance = _std_tolerance(kernel.size)
        assert kernel.std() == pytest.approx(std, rel=tolerance), name
        assert abs(kernel.mean()) < 5 * std / math.sqrt(kernel.size), name
    assert conv.kernel_initializer.scheme.stats((3, 3, 16, 32), layout="keras").std == (
        pytest.approx(expected["conv"][1])
    )


@pytest.mark.parametrize(
    ("scheme", "params"),
    [
        ("he_uniform", {}),
        ("he_normal", {"distribution": "truncated_normal"}),
        ("lecun_normal", {}),
        ("xavier_normal", {}),
        ("variance_scaling", {"scale": 0.5, "mode": "fan_avg", "distribution": "uniform"}),
        ("orthogonal", {"gain": 2.0}),
        ("normal", {"std": 0.02}),
    ],
)
def test_values_match_the_scheme_stats(scheme: str, params: dict[str, Any]) -> None:
    shape = (3, 3, 32, 64)
    values = keras.ops.convert_to_numpy(ik.initializer(scheme, seed=0, **params)(shape))
    expected = get(scheme, **params).stats(shape, layout="keras").std
    assert values.std() == pytest.approx(expected, rel=_std_tolerance(values.size))


def test_depthwise_layout_counts_one_channel_per_output() -> None:
    shape = (5, 5, 64, 4)  # DepthwiseConv2D kernel: fan_in = 25, not 25 * 64
    values = keras.ops.convert_to_numpy(ik.HeNormal(seed=0, layout="keras_depthwise")(shape))
    assert values.std() == pytest.approx(math.sqrt(2.0 / 25), rel=_std_tolerance(values.size))


def test_call_k_draws_from_the_documented_stream() -> None:
    init = ik.HeNormal(seed=7)
    scheme = get("he_normal")
    for call in range(2):
        expected = scheme.array((6, 5), np.random.default_rng([7, call]), layout="keras")
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(init((6, 5))), expected.astype(np.float32)
        )


def test_returns_a_backend_tensor_of_the_requested_dtype() -> None:
    values = ik.Ones()((2, 3), dtype="float16")
    assert keras.ops.is_tensor(values)
    assert keras.backend.standardize_dtype(values.dtype) == "float16"
    assert keras.backend.standardize_dtype(ik.Zeros()((2,)).dtype) == keras.backend.floatx()


# --- serialization --------------------------------------------------------------------------


def _same_initializers(first: Any, second: Any) -> None:
    for a, b in zip(_initialized_layers(first), _initialized_layers(second), strict=True):
        assert type(a.kernel_initializer) is type(b.kernel_initializer)
        assert a.kernel_initializer.get_config() == b.kernel_initializer.get_config()


def test_model_round_trips_through_a_keras_file(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    _same_initializers(model, loaded)
    for a, b in zip(_initialized_layers(model), _initialized_layers(loaded), strict=True):
        np.testing.assert_array_equal(_kernel(a), _kernel(b))


def test_model_round_trips_through_json() -> None:
    model = _model()
    rebuilt = keras.models.model_from_json(model.to_json())
    _same_initializers(model, rebuilt)
    assert isinstance(_initialized_layers(rebuilt)[1].kernel_initializer, ik.HeNormal)
    # Each layer owns its seeded initializer, so the rebuilt model starts from the same weights.
    for a, b in zip(_initialized_layers(model), _initialized_layers(rebuilt), strict=True):
        np.testing.assert_array_equal(_kernel(a), _kernel(b))


def test_generic_initializer_config_round_trips() -> None:
    init = ik.InitlabInitializer({"scheme": "dirac", "groups": 2}, seed=3, repeat=True)
    config = init.get_config()
    assert config == {"scheme": "dirac", "groups": 2, "seed": 3, "repeat": True, "layout": "keras"}
    restored = keras.initializers.deserialize(keras.saving.serialize_keras_object(init))
    assert type(restored) is ik.InitlabInitializer
    assert restored.get_config() == config


@pytest.mark.parametrize(
    ("identifier", "cls"),
    [
        ("initlab>HeNormal", "HeNormal"),
        ("initlab>he_normal", "HeNormal"),
        ("initlab>kaiming_normal", "HeNormal"),
        ("initlab>glorot_uniform", "XavierUniform"),
        ("initlab>InitlabInitializer", "InitlabInitializer"),
    ],
)
def test_keras_finds_initializers_by_name(identifier: str, cls: str) -> None:
    assert type(keras.initializers.get(identifier)) is getattr(ik, cls)


def test_keras_finds_a_config_dict() -> None:
    found = keras.initializers.get(
        {"class_name": "initlab>HeNormal", "config": {"mode": "fan_out", "seed": 4}}
    )
    assert found.scheme == get("he_normal", mode="fan_out")
    assert found.seed == 4


def test_every_named_class_and_alias_resolves() -> None:
    for name, cls in ik._NAMED.items():
        for alias in (name, *scheme_aliases(name)):
            assert type(ik.initializer(alias)) is cls
            assert type(keras.initializers.get(f"initlab>{alias}")) is cls


# --- seeds ----------------------------------------------------------------------------------


def _shared_kernels(init: Any, count: int = 2) -> list[np.ndarray[Any, Any]]:
    layers = [keras.layers.Dense(16, kernel_initializer=init) for _ in range(count)]
    for layer in layers:
        layer.build((None, 16))
    return [_kernel(layer) for layer in layers]


@pytest.mark.parametrize("seed", [None, 5])
def test_a_shared_initializer_gives_each_layer_fresh_weights(seed: int | None) -> None:
    first, second = _shared_kernels(ik.HeNormal(seed=seed))
    assert not np.array_equal(first, second)


def test_a_seeded_initializer_is_reproducible() -> None:
    np.testing.assert_array_equal(
        np.stack(_shared_kernels(ik.HeNormal(seed=5))),
        np.stack(_shared_kernels(ik.HeNormal(seed=5))),
    )


@pytest.mark.parametrize("seed", [None, 5])
def test_repeat_gives_identical_weights_when_asked(seed: int | None) -> None:
    first, second = _shared_kernels(ik.HeNormal(seed=seed, repeat=True))
    np.testing.assert_array_equal(first, second)


def test_unseeded_initializers_follow_keras_global_seed() -> None:
    keras.utils.set_random_seed(11)
    first = _shared_kernels(ik.HeNormal())
    keras.utils.set_random_seed(11)
    second = _shared_kernels(ik.HeNormal())
    np.testing.assert_array_equal(np.stack(first), np.stack(second))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: ik.initializer("he_normall"),
        lambda: ik.InitlabInitializer("he_normall"),
        lambda: ik.InitlabInitializer.from_config({"scheme": "he_normall", "seed": 0}),
    ],
)
def test_unknown_scheme_names_it_and_the_closest(make: Any) -> None:
    with pytest.raises(UnknownNameError, match=r"'he_normall'.*Did you mean 'he_normal'"):
        make()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mod": "fan_out"}, "no parameter 'mod'"),
        ({"seed": -1}, "seed must be a non-negative int or None, got -1"),
        ({"seed": 1.5}, "got 1.5"),
        ({"repeat": "yes"}, "repeat must be True or False, got 'yes'"),
        ({"layout": "torch"}, "layout must be one of keras, keras_depthwise, got 'torch'"),
        ({"groups": 0}, "groups must be a positive int, got 0"),
    ],
)
def test_bad_options_are_initlab_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ik.HeNormal(**kwargs)


def _import_error(prelude: str, env: dict[str, str]) -> str:
    code = textwrap.dedent(
        f"""
        import sys
        {prelude}
        from initlab.errors import InitlabError
        try:
            import initlab.integrations.keras
        except InitlabError as error:
            print(error)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout


def test_missing_keras_names_the_extra() -> None:
    message = _import_error("sys.modules['keras'] = None", dict(os.environ))
    assert "pip install 'initlab[keras]'" in message


def test_missing_backend_says_how_to_pick_torch() -> None:
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed, so Keras' TensorFlow backend imports")
    message = _import_error("", {**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert "KERAS_BACKEND=torch" in message


# --- README ---------------------------------------------------------------------------------


def test_readme_snippet_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    exec(compile(README_SNIPPET, "README.md", "exec"), {})
    assert (tmp_path / "model.keras").is_file()
    assert capsys.readouterr().out.strip() == "HeNormal(he_normal(), seed=0)"
