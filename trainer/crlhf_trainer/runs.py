"""A night's run folders in the work dir (``WORK/runs/<run>/``): a new one, the latest, the
one a ``--resume`` continues; and the JSON records each stage leaves in them."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import TrainConfigError
from .pull import WorkDir

__all__ = ["latest_run", "main_rank", "new_run", "resumable_run", "write_json"]


def new_run(work: WorkDir) -> Path:
    # Under `accelerate launch` every rank runs this: CRLHF_RUN_ID gives them one folder.
    name = os.environ.get("CRLHF_RUN_ID") or datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    run = work.root / "runs" / name
    run.mkdir(parents=True, exist_ok=True)
    return run


def resumable_run(work: WorkDir) -> Path:
    """The latest run with a training checkpoint (``crlhf-train train --resume``)."""
    runs = sorted((work.root / "runs").glob("*/adapter.checkpoint/progress.json"))
    if not runs:
        raise TrainConfigError(
            f"--resume: no run in {work.root} has a checkpoint; train with --checkpoint-every N"
        )
    return runs[-1].parent.parent


def main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


def latest_run(work: WorkDir) -> Path:
    runs = sorted((work.root / "runs").glob("*/train.json"))
    if not runs:
        raise TrainConfigError(f"no training run in {work.root}; run `crlhf-train train` first")
    return runs[-1].parent


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
