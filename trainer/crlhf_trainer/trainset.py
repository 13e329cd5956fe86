"""Which rated completions a night trains on: the held-out split, the recent window and
the replay of older ones (:func:`~crlhf_trainer.nightly.train_run` applies them in turn)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from .errors import NoTrainingData
from .examples import Example

__all__ = ["is_heldout", "recent_with_replay", "split_examples"]


class _OfCompletion(Protocol):
    @property
    def completion_id(self) -> str: ...


T = TypeVar("T", bound=_OfCompletion)


def is_heldout(cid: str, fraction: float) -> bool:
    """Whether completion ``cid`` is in the held-out split (the same side every night)."""
    h = int.from_bytes(hashlib.sha256(cid.encode()).digest()[:4], "big")
    return h / 2**32 < fraction


def split_examples(examples: list[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """Deterministic by completion id, so a completion stays on its side every night.

    The held-out side is never trained on: a store so small that nothing is left to train
    on raises :class:`NoTrainingData` rather than training on the evaluation's items.
    """
    held = [e for e in examples if is_heldout(e.completion_id, fraction)]
    train = [e for e in examples if not is_heldout(e.completion_id, fraction)]
    if not train:
        raise NoTrainingData(
            f"all {len(examples)} rated completion(s) fall in the held-out split "
            f"({fraction:.0%}); rate more completions or lower the held-out fraction"
        )
    return train, held


def recent_with_replay(
    examples: list[T],
    completions: dict[str, dict[str, Any]],
    window_days: float,
    replay: float,
    *,
    seed: int = 0,
    now: datetime | None = None,
) -> tuple[list[T], dict[str, int]]:
    """The examples created in the last ``window_days``, plus a seeded random sample of the
    older ones, ``replay`` times as many as the recent ones (all of them if fewer). Anything
    with a ``completion_id`` goes (examples, correction pairs): its completion's age counts."""
    import random

    if window_days <= 0:
        return examples, {"recent": len(examples), "replayed": 0, "older": 0}
    now = now or datetime.now(UTC)
    cutoff = now.timestamp() - window_days * 86400

    def created(e: T) -> float:
        raw = completions.get(e.completion_id, {}).get("created_at")
        if raw is None:
            return now.timestamp()  # unknown age: treat as new rather than drop it
        when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()

    recent = [e for e in examples if created(e) >= cutoff]
    older = [e for e in examples if created(e) < cutoff]
    k = min(len(older), round(replay * len(recent)))
    replayed = random.Random(seed).sample(older, k) if k else []
    return recent + replayed, {"recent": len(recent), "replayed": k, "older": len(older)}
