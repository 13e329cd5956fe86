"""What the distribution's metadata promises (pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_trainer_needs_a_torch_whose_load_refuses_pickled_code() -> None:
    """torch.load runs a pickle's code unless weights_only=True, its default from 2.6 on;
    PEFT falls back to it for a .bin adapter."""
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    (torch,) = [r for r in map(Requirement, extras["train"]) if r.name == "torch"]
    floor = min(Version(s.version) for s in torch.specifier if s.operator in (">=", "=="))
    assert floor >= Version("2.6"), torch
