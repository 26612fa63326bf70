"""The zoo: every check on every architecture (see ``architectures.py`` and ``checks.py``).

One test function per check, parametrized over the registry, so a failure reads as
"architecture x check": ``test_doctor_stock_init[Whisper]``. Transformers is needed for most
entries; the torch.nn ones run without it.
"""

from __future__ import annotations

import importlib.util

import checks
import pytest
from architectures import ARCHITECTURES, Architecture

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None

ZOO = [
    pytest.param(
        architecture,
        id=architecture.name,
        marks=pytest.mark.skipif(
            architecture.family != "torch.nn" and not HAS_TRANSFORMERS,
            reason="needs transformers (pip install 'initlab[hf]')",
        ),
    )
    for architecture in ARCHITECTURES
]


def test_the_zoo_covers_every_family() -> None:
    families = {architecture.family for architecture in ARCHITECTURES}
    assert families == {
        "encoder", "decoder", "encoder-decoder", "vision", "audio", "state-space", "torch.nn"
    }  # fmt: skip
    assert len(ARCHITECTURES) >= 25
    assert len({architecture.name for architecture in ARCHITECTURES}) == len(ARCHITECTURES)


@pytest.mark.parametrize("architecture", ZOO)
def test_plan_gives_every_weight_a_scheme(architecture: Architecture) -> None:
    checks.check_plan_schemes(architecture)


@pytest.mark.parametrize("architecture", ZOO)
def test_plan_covers_every_layer(architecture: Architecture) -> None:
    checks.check_plan_covers_layers(architecture)


@pytest.mark.parametrize("architecture", ZOO)
def test_plan_fans_match_the_layer(architecture: Architecture) -> None:
    checks.check_plan_fans(architecture)


@pytest.mark.parametrize("architecture", ZOO)
def test_plan_apply(architecture: Architecture) -> None:
    checks.check_plan_apply(architecture)


@pytest.mark.parametrize("architecture", ZOO)
def test_audit_stock_init(architecture: Architecture) -> None:
    checks.check_audit_stock(architecture)


@pytest.mark.parametrize("architecture", ZOO)
def test_audit_after_auto(architecture: Architecture) -> None:
    checks.check_audit_after_auto(architecture)


@pytest.mark.parametrize("architecture", ZOO)
def test_doctor_stock_init(architecture: Architecture) -> None:
    checks.check_doctor(architecture)


@pytest.mark.parametrize("architecture", ZOO)
def test_lsuv_claims_hold(architecture: Architecture) -> None:
    checks.check_lsuv_claims(architecture)


@pytest.mark.parametrize("architecture", ZOO)
def test_lsuv_accounts_for_every_layer(architecture: Architecture) -> None:
    checks.check_lsuv_accounts_for_every_layer(architecture)


@pytest.mark.parametrize("architecture", ZOO)
def test_materialize(architecture: Architecture) -> None:
    checks.check_materialize(architecture)


@pytest.mark.parametrize("architecture", ZOO)
def test_materialize_buffers(architecture: Architecture) -> None:
    checks.check_materialize_buffers(architecture)
