"""The published adapter a night continues from: found, downloaded and verified, once.

Under ``accelerate launch`` every rank asks for it, but only the main rank talks to the
store and writes the run folder (``parent.json`` records what it found for the others).
A new base model starts a new chain: a parent trained on another base is never continued.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crlhf_contract.client import AdapterUnverified, StoreClient, StoreError

from .errors import AdapterError, StoreGone
from .runs import write_json

if TYPE_CHECKING:
    from .nightly import NightlyConfig


def store_call(what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, a store failure turned into :class:`StoreGone` naming ``what`` was done."""
    try:
        return fn()
    except StoreError as exc:
        raise StoreGone(f"the store failed while {what} ({exc}); nothing was published") from exc


def parent_adapter(
    cfg: NightlyConfig, connect: Callable[[], StoreClient], run: Path
) -> tuple[str | None, Path | None]:
    """The published adapter to continue from, downloaded and verified, if any.

    Under ``accelerate launch`` every rank runs this: the main rank downloads into the
    run folder and records what it found; the others wait for it and read that record,
    so no two processes write one folder.
    """
    from accelerate import PartialState

    state = PartialState(cpu=cfg.train.device == "cpu")
    record = run / "parent.json"
    if state.is_main_process:
        version, dest = _download_parent(cfg, connect, run)
        write_json(record, {"version": version, "dir": str(dest) if dest else None})
    state.wait_for_everyone()
    found = json.loads(record.read_text())
    return found["version"], Path(found["dir"]) if found["dir"] else None


def _download_parent(
    cfg: NightlyConfig, connect: Callable[[], StoreClient], run: Path
) -> tuple[str | None, Path | None]:
    if not cfg.continue_from_latest:
        return None, None
    with connect() as client:
        latest = store_call("asking for the latest adapter", client.latest_adapter)
        if latest is None:
            return None, None
        if latest.base_model != cfg.model:
            return None, None  # a new base model starts a new chain
        dest = run / "parent"
        try:
            client.download_adapter(latest, dest)
        except AdapterUnverified as exc:
            raise AdapterError(
                f"the published adapter {latest.version} fails its checks ({exc}); retire it "
                "or train from the base model with --no-continue"
            ) from exc
        except StoreError as exc:
            raise StoreGone(f"downloading adapter {latest.version} failed: {exc}") from exc
    return latest.version, dest
