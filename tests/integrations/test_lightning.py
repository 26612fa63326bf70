"""PyTorch Lightning: InitCallback applies a plan once; DoctorCallback logs and can stop a run."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import initlab
from initlab.train.models import MLP

L = pytest.importorskip("lightning.pytorch")
integration = pytest.importorskip("initlab.integrations.lightning")

from lightning.pytorch.loggers import CSVLogger, Logger  # noqa: E402

DoctorCallback = integration.DoctorCallback
InitCallback = integration.InitCallback

pytestmark = [
    # Lightning's advice for real jobs, not for an 8-batch CPU test.
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    # Lightning 2.6 calls a torch.utils._pytree API that torch 2.13 deprecates.
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
    ),
]

README_SNIPPET = """\
import lightning.pytorch as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from initlab.integrations.lightning import DoctorCallback, InitCallback

class Classifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    def forward(self, x):
        return self.net(x)
    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

data = TensorDataset(torch.randn(256, 64), torch.randint(0, 10, (256,)))
init, diagnose = InitCallback("kaiming", seed=0), DoctorCallback(every_n_steps=4)
trainer = L.Trainer(max_steps=8, accelerator="cpu", callbacks=[init, diagnose],
                    logger=False, enable_progress_bar=False, enable_checkpointing=False,
                    enable_model_summary=False)
trainer.fit(Classifier(), DataLoader(data, batch_size=32))
print(init.assignments["net.0.weight"].scheme)       # he_normal(...): applied at setup
print(sorted(diagnose.reports), diagnose.stop_reason)  # [0, 4] None
"""


class MemoryLogger(Logger):
    """Keeps what Lightning sends it."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.hyperparameters: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(params, dict):
            self.hyperparameters.update(params)

    def steps_with(self, key: str) -> list[int | None]:
        return [step for step, metrics in self.metrics if key in metrics]


class Classifier(L.LightningModule):  # type: ignore[misc]
    def __init__(self, depth: int = 2, width: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = MLP(64, 10, depth=depth, width=width, dropout=dropout)
        self.at_train_start: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def on_train_start(self) -> None:
        self.at_train_start = {n: p.detach().clone() for n, p in self.named_parameters()}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class ValidatedClassifier(Classifier):
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))


def loader(n: int = 256) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 64, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=32)


def trainer(max_steps: int, callbacks: list[Any], logger: Any = None, **kwargs: Any) -> Any:
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        logger=logger if logger is not None else False,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


class CountingPlan(initlab.Plan):
    calls = 0

    def apply(self, model: nn.Module, seed: int = 0, **kwargs: Any) -> initlab.Assignments:
        CountingPlan.calls += 1
        return super().apply(model, seed, **kwargs)


def test_readme_snippet_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(README_SNIPPET, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2].startswith("he_normal")
    assert printed[-1] == "[0, 4] None"


def test_init_callback_applies_the_plan_once_at_setup() -> None:
    CountingPlan.calls = 0
    plan = CountingPlan(
        [
            initlab.rule(role="weight", scheme="he_normal"),
            initlab.rule(role="bias", scheme="zeros"),
        ]
    )
    logger = MemoryLogger()
    callback = InitCallback(plan, seed=3)
    torch.manual_seed(1)
    module = ValidatedClassifier()
    run = trainer(2, [callback], logger)
    run.fit(module, loader(), loader(64))
    torch.manual_seed(2)  # another torch default init: the plan must overwrite all of it
    expected = ValidatedClassifier()
    initlab.Plan(plan.rules).apply(expected, seed=3)
    for name, value in expected.named_parameters():
        assert torch.equal(module.at_train_start[name], value), name
    assert callback.assignments is not None
    assert callback.assignments.seed == 3
    assert logger.hyperparameters["initlab/initialized"] == len(callback.assignments)
    assert logger.hyperparameters["initlab/plan"] == "plan"

    trained = {n: p.detach().clone() for n, p in module.named_parameters()}
    run.validate(module, loader(64), verbose=False)
    assert all(torch.equal(p, trained[n]) for n, p in module.named_parameters())
    trainer(4, [callback]).fit(module, loader(), loader(64))  # continues, not re-initialized
    assert all(torch.equal(module.at_train_start[n], trained[n]) for n in trained)
    assert CountingPlan.calls == 1


def test_init_callback_with_a_preset_name_and_bad_arguments() -> None:
    callback = InitCallback("kaiming", seed=0)
    module = Classifier()
    trainer(1, [callback]).fit(module, loader(64))
    assert callback.assignments is not None
    assert str(callback.assignments["net.head.weight"].scheme).startswith("he_normal")
    with pytest.raises(initlab.ConfigError, match="Plan takes none"):
        InitCallback(initlab.Plan(), n_layer=2)
    with pytest.raises(initlab.ConfigError, match="got int"):
        InitCallback(3)  # type: ignore[arg-type]


def test_doctor_statistics_reach_the_logger_on_the_first_batch_only() -> None:
    logger = MemoryLogger()
    callback = DoctorCallback()
    trainer(3, [callback], logger).fit(Classifier(), loader())
    assert sorted(callback.reports) == [0]
    assert logger.steps_with("doctor/net.layers.0.linear/std") == [0]
    assert logger.steps_with("doctor/net.head/grad_std") == [0]
    _step, metrics = next(item for item in logger.metrics if "doctor/healthy" in item[1])
    assert metrics["doctor/findings/critical"] == 0.0
    assert all(isinstance(v, float) for v in metrics.values())
    assert callback.report is callback.reports[0]
    # One number, one name: what the callback logs is what write_doctor writes.
    assert metrics == callback.report.scalars()


def test_every_n_steps_logs_again_over_training() -> None:
    logger = MemoryLogger()
    callback = DoctorCallback(every_n_steps=2)
    trainer(5, [callback], logger).fit(Classifier(), loader())
    assert sorted(callback.reports) == [0, 2, 4]
    assert logger.steps_with("doctor/net.head/weight_std") == [0, 2, 4]
    first, last = callback.reports[0], callback.reports[4]
    assert first.rows()[0]["weight_std"] != last.rows()[0]["weight_std"]  # it trained


def test_csv_logger_gets_the_statistics_and_the_plan_summary(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, name="run", version=0)
    trainer(2, [InitCallback("kaiming"), DoctorCallback()], logger).fit(Classifier(), loader())
    with open(tmp_path / "run" / "version_0" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert any(row.get("doctor/net.layers.0.linear/std") for row in rows)
    assert "initlab/plan: kaiming" in (tmp_path / "run" / "version_0" / "hparams.yaml").read_text()


def test_the_doctor_does_not_change_the_training_run() -> None:
    # Dropout draws from the global RNG: the doctor's forward runs on a forked copy of it.
    def train(callbacks: list[Any]) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        module = Classifier(dropout=0.5)
        trainer(4, callbacks).fit(module, loader())
        assert module.training
        return {n: p.detach().clone() for n, p in module.named_parameters()}

    plain = train([])
    diagnosed = train([DoctorCallback(every_n_steps=1)])
    assert all(torch.equal(plain[n], diagnosed[n]) for n in plain)


def test_stop_on_critical_stops_a_deep_default_initialized_mlp() -> None:
    callback = DoctorCallback(stop_on_critical=True)
    run = trainer(50, [callback])
    with pytest.warns(UserWarning, match="critical finding 'vanishing_gradients'"):
        run.fit(Classifier(depth=8, width=128), loader())  # PyTorch's default init
    assert callback.stop_reason is not None
    assert "stop_on_critical=False" in callback.stop_reason
    assert run.global_step == 1  # the step in flight finishes, as with EarlyStopping


def test_a_good_init_is_not_stopped_and_critical_is_only_logged_without_stop() -> None:
    healthy = DoctorCallback(stop_on_critical=True)
    run = trainer(3, [InitCallback("kaiming"), healthy])
    run.fit(Classifier(depth=8, width=128), loader())
    assert healthy.stop_reason is None
    assert run.global_step == 3
    logger = MemoryLogger()
    watching = DoctorCallback()
    run = trainer(3, [watching], logger)
    run.fit(Classifier(depth=8, width=128), loader())
    assert run.global_step == 3
    assert watching.stop_reason is None
    critical = [m["doctor/findings/critical"] for _, m in logger.metrics if "doctor/healthy" in m]
    assert critical[0] >= 1.0


def test_input_fn_and_default_input() -> None:
    x = torch.ones(2, 3)
    assert integration.default_input(x) is x
    assert integration.default_input((x, x[:, 0])) is x
    assert integration.default_input({"input_ids": x, "labels": 1}) is x
    with pytest.raises(initlab.InitlabError, match="input_fn="):
        integration.default_input({"pixels": x})
    with pytest.raises(initlab.ConfigError, match="every_n_steps"):
        DoctorCallback(every_n_steps=0)
    with pytest.raises(initlab.ConfigError, match="loss_fn"):
        DoctorCallback(target_fn=lambda batch: batch[1])


def test_input_fn_and_loss_fn_on_a_dict_batch() -> None:
    class DictClassifier(Classifier):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self(batch["features"]), batch["label"])

    class DictData(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __init__(self) -> None:
            generator = torch.Generator().manual_seed(0)
            self.x = torch.randn(64, 64, generator=generator)
            self.y = torch.randint(0, 10, (64,), generator=generator)

        def __len__(self) -> int:
            return 64

        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            return {"features": self.x[index], "label": self.y[index]}

    callback = DoctorCallback(
        input_fn=lambda batch: batch["features"],
        loss_fn=nn.functional.cross_entropy,
        target_fn=lambda batch: batch["label"],
    )
    trainer(1, [callback]).fit(DictClassifier(), DataLoader(DictData(), batch_size=16))
    assert callback.report is not None
    assert callback.report.records


def test_init_callback_warns_about_layers_built_in_configure_model() -> None:
    class Deferred(Classifier):
        def configure_model(self) -> None:
            self.extra = nn.Linear(2, 2)

    with pytest.warns(UserWarning, match=r"configure_model\(\)"):
        trainer(1, [InitCallback("kaiming")]).fit(Deferred(), loader(64))
