"""The checkpoint scheme: tensors copied by name from safetensors or torch files, nothing else."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file, save_model
from torch import nn

import initlab
from initlab.errors import ConfigError, ShapeError
from initlab.plan import Checkpoint, Plan, rule
from initlab.plan.apply import fill_parameter

UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("ran")
    return "payload"


class Payload:
    """Unpickling this would call a function of this module: weights_only must refuse it."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return _record_unpickling, ()


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.encoder(x)))


class Wrapped(nn.Module):
    """The same network one level down: its names are ``backbone.<Net's names>``."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def trained() -> Net:
    torch.manual_seed(123)
    return Net()


def test_safetensors_with_a_stripped_prefix_copies_what_the_file_holds(tmp_path: Path) -> None:
    source = trained()
    path = tmp_path / "encoder.safetensors"
    encoder_only = {f"module.{k}": v for k, v in source.state_dict().items() if "encoder" in k}
    save_file(encoder_only, str(path))
    model = Net()
    plan = Plan([rule(scheme="checkpoint", path=str(path), strip_prefix="module.")])
    with pytest.warns(UserWarning, match="head.weight, head.bias"):
        table = plan.apply(model, seed=0)  # the head's: reported, then initialized by default
    for name, tensor in model.named_parameters():
        from_file = name.startswith("encoder.")
        assert torch.equal(tensor, source.state_dict()[name]) == from_file, name
        row = table[name]
        assert isinstance(row.scheme, Checkpoint) == from_file
        if from_file:
            assert row.source == f"rule 0 (every parameter) -> checkpoint {path} [module.{name}]"
        else:
            assert row.source == "default auto"
    assert table["head.weight"].scheme == initlab.get("xavier_normal")


def test_torch_state_dict_nested_and_prefixed(tmp_path: Path) -> None:
    source = trained()
    path = tmp_path / "last.pt"
    torch.save({"epoch": 3, "state_dict": source.state_dict()}, path)
    model = Wrapped()
    plan = Plan(
        [
            rule(
                "backbone.encoder.*",
                "checkpoint",
                path=str(path),
                strip_prefix="state_dict.",
                add_prefix="backbone.",
            ),
            rule(role="weight", scheme="zeros"),
        ],
        default="keep",
    )
    table = plan.apply(model)
    for name, tensor in source.state_dict().items():
        ours = model.get_parameter(f"backbone.{name}")
        if name.startswith("encoder."):
            assert torch.equal(ours, tensor)
            assert table[f"backbone.{name}"].source.endswith(f"[state_dict.{name}]")
        elif name.endswith("weight"):
            assert torch.count_nonzero(ours) == 0
            assert table[f"backbone.{name}"].source == "rule 1 (role=weight)"


def test_parameters_missing_from_the_file_fall_to_later_rules(tmp_path: Path) -> None:
    source = trained()
    path = tmp_path / "partial.safetensors"
    save_file({"encoder.0.weight": source.encoder[0].weight.detach().clone()}, str(path))
    plan = Plan(
        [
            rule(role="weight", scheme="checkpoint", path=str(path)),
            rule(role="weight", scheme="ones"),
        ],
        default="keep",
    )
    model = Net()
    with pytest.warns(UserWarning, match="encoder.2.weight, head.weight"):
        table = plan.apply(model)
    assert torch.equal(model.encoder[0].weight, source.encoder[0].weight)
    assert torch.equal(model.head.weight, torch.ones(3, 8))
    assert table["encoder.0.weight"].rule_index == 0
    assert table["encoder.2.weight"].rule_index == 1
    assert table["encoder.0.bias"].scheme is None


def test_a_rule_whose_file_holds_nothing_it_selects_is_reported_unused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(trained().state_dict(), str(path))
    plan = Plan([rule(scheme="checkpoint", path=str(path), strip_prefix="module.")])
    with pytest.warns(UserWarning, match="rule 0 .* matched no parameter"):
        table = plan.resolve(Net())
    assert table.unused_rules == ((0, "every parameter"),)


def test_dtype_is_cast_to_the_parameter(tmp_path: Path) -> None:
    source = {k: v.double() for k, v in trained().state_dict().items()}
    path = tmp_path / "double.pth"
    torch.save(source, path)
    model = Net()
    Plan([rule(scheme="checkpoint", path=str(path))]).apply(model)
    assert model.head.weight.dtype == torch.float32
    assert torch.equal(model.head.weight, source["head.weight"].float())


def test_tied_parameters_are_found_under_any_of_their_names(tmp_path: Path) -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.out = nn.Linear(4, 10, bias=False)
            self.out.weight = self.embed.weight

    source = Tied()
    path = tmp_path / "tied.safetensors"
    save_model(source, str(path))  # keeps one of the two names
    model = Tied()
    Plan([rule(scheme="checkpoint", path=str(path))]).apply(model)
    assert torch.equal(model.embed.weight, source.embed.weight)
    assert model.out.weight is model.embed.weight


@pytest.mark.parametrize("suffix", ["safetensors", "pt"])
def test_a_shape_mismatch_names_the_parameter_the_key_and_both_shapes(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"w.{suffix}"
    tensors = {"head.weight": torch.zeros(8, 3)}
    if suffix == "pt":
        torch.save(tensors, path)
    else:
        save_file(tensors, str(path))
    plan = Plan([rule("head.weight", "checkpoint", path=str(path))], default="keep")
    with pytest.raises(ShapeError) as caught:
        plan.apply(Net())
    message = str(caught.value)
    assert "Parameter 'head.weight' has shape (3, 8)" in message
    assert f"checkpoint {str(path)!r} key 'head.weight' has shape (8, 3)" in message
    assert "strip_prefix / add_prefix" in message


def test_torch_files_are_loaded_with_weights_only_so_code_is_never_run(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"head.weight": torch.zeros(3, 8), "extra": Payload()}, path)
    plan = Plan([rule(scheme="checkpoint", path=str(path))], default="keep")
    with pytest.raises(ConfigError) as caught:
        plan.resolve(Net())
    message = str(caught.value)
    assert f"checkpoint {str(path)!r}: torch.load(weights_only=True) refused it" in message
    assert "_record_unpickling" in message
    assert "never unpickles code" in message
    assert UNPICKLED == []


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("junk.pt", b"not a checkpoint", "torch.load"),
        ("junk.safetensors", b"\x00" * 16, "not a readable safetensors file"),
    ],
)
def test_damaged_files_are_named(tmp_path: Path, name: str, content: bytes, says: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=says) as caught:
        Plan([rule(scheme="checkpoint", path=str(path))]).resolve(Net())
    assert str(path) in str(caught.value)


def test_a_missing_file_is_named_at_resolution(tmp_path: Path) -> None:
    plan = Plan([rule(scheme="checkpoint", path=str(tmp_path / "gone.safetensors"))])
    with pytest.raises(ConfigError, match=r"gone\.safetensors'?: no such file"):
        plan.resolve(Net())


def test_the_scheme_is_a_registered_serializable_value() -> None:
    scheme = initlab.get("checkpoint", path="w.safetensors", strip_prefix="module.")
    assert isinstance(scheme, Checkpoint)
    assert initlab.from_config(scheme.to_config()) == scheme
    assert str(scheme) == "checkpoint(path='w.safetensors', strip_prefix='module.')"
    assert scheme.key_of("fc.weight") == "module.fc.weight"
    assert Checkpoint(path=Path("w.pt")).path == "w.pt"
    assert Checkpoint("w.pt", add_prefix="net.").key_of("head.weight") is None


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({}, "give path="),
        ({"path": "w.npz"}, r"unknown file kind '\.npz'. Known: \.safetensors, \.pt"),
        ({"path": "w.pt", "strip_prefix": 3}, "strip_prefix must be a string"),
    ],
)
def test_bad_parameters_are_refused_at_construction(params: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        initlab.get("checkpoint", **params)


def test_filling_a_bare_tensor_says_to_use_a_plan() -> None:
    scheme = initlab.get("checkpoint", path="w.safetensors")
    with pytest.raises(ConfigError, match=r"needs the parameter's name.*initlab\.Plan"):
        scheme.fill_(torch.empty(3, 3))
    with pytest.raises(ConfigError, match="Use it in a plan"):
        scheme.array((3, 3))


def test_a_checkpoint_default_keeps_what_the_file_lacks(tmp_path: Path) -> None:
    source = trained()
    path = tmp_path / "head.safetensors"
    save_file({"head.weight": source.head.weight.detach().clone()}, str(path))
    model = Net()
    before = model.encoder[0].weight.detach().clone()
    with pytest.warns(UserWarning, match="they are kept as they are"):
        table = Plan(default=Checkpoint(str(path))).apply(model)
    assert torch.equal(model.head.weight, source.head.weight)
    assert torch.equal(model.encoder[0].weight, before)
    assert table["encoder.0.weight"].source.endswith(f"keep (not in checkpoint {path})")


def test_a_multiplier_scales_the_copied_values(tmp_path: Path) -> None:
    source = trained()
    path = tmp_path / "w.safetensors"
    save_file(source.state_dict(), str(path))
    model = Net()
    table = Plan(
        [rule("head.weight", "checkpoint", path=str(path), multiplier=0.5)], default="keep"
    ).apply(model)
    assert torch.allclose(model.head.weight, 0.5 * source.head.weight)
    assert table["head.weight"].std is None  # unknown until the file is read


def test_fill_parameter_reads_the_file_for_a_row_not_from_resolve(tmp_path: Path) -> None:
    source = trained()
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    model = Net()
    plan = Plan([rule("head.weight", "checkpoint", path=str(path))], default="keep")
    row = dataclasses.replace(plan.resolve(model)["head.weight"], scheme=Checkpoint(str(path)))
    assert isinstance(row.scheme, Checkpoint)
    with torch.no_grad():
        fill_parameter(model.head.weight, row, seed=0)
    assert torch.equal(model.head.weight, source.head.weight)
    elsewhere = dataclasses.replace(row, scheme=Checkpoint(str(path), add_prefix="net."))
    with pytest.raises(ConfigError, match=r"no key for parameter 'head.weight' \(no add_prefix\)"):
        fill_parameter(model.head.weight, elsewhere, seed=0)


def test_the_scheme_is_a_description_and_apply_opens_each_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = trained()
    path = tmp_path / "w.safetensors"
    save_file(source.state_dict(), str(path))
    scheme = Checkpoint(path)
    assert scheme.path == str(path)  # an os.PathLike is kept as its str
    assert scheme.params() == {"path": str(path), "strip_prefix": "", "add_prefix": ""}
    opened: list[str] = []
    original = initlab.plan.checkpoint.CheckpointFile.__init__

    def counting(self: object, file: str) -> None:
        opened.append(str(file))
        original(self, file)  # type: ignore[arg-type]

    monkeypatch.setattr(initlab.plan.checkpoint.CheckpointFile, "__init__", counting)
    plan = Plan([rule("encoder.*", scheme), rule("head.*", scheme)], default="keep")
    plan.apply(Net())  # resolves (keys, shapes) and copies five tensors from one open file
    assert opened == [str(path)]
    plan.resolve(Net())
    assert opened == [str(path)] * 2  # a table holds no open file: each step opens its own
