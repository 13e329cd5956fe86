"""Fill a live store with a simulated crowd, through the HTTP API, for the dashboard tests.

``fill(store)`` simulates annotators of every kind (``crlhf_trainer.simulate``) rating the
lines of completions; then, like a developer's editor, each owner posts its completions and
shown / accepted events (completions of adapters v1 and v2, accepted ones with a retention
check: :func:`retention_check`), and each annotator its line ratings. Honeypots (the first
completions, whose truth the simulator knows) go in through the dashboard's import form.
The trainer then exports the labels, aggregates them (``crlhf_trainer.aggregation``, two
"nights": majority vote, then em2) and posts both aggregation runs; two adapters are
uploaded, the first published. One annotator is the XSS probe ``<img src=x onerror=…>``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from crlhf_contract.retention import RetainedLine
from crlhf_contract.schemas import (
    AggregationRunIn,
    AnnotatorReliabilityIn,
    CompletionIn,
    CompletionRewardIn,
    EventIn,
    RatingIn,
)
from crlhf_trainer.aggregation import aggregate
from crlhf_trainer.aggregation.labels import LabelSet
from crlhf_trainer.rewards import completion_rewards
from crlhf_trainer.simulate import simulate_crowd

XSS = "<img src=x onerror=alert(1)>"
NAMES = ["ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "edsger", XSS]
MIX = {"reliable": 4, "mediocre": 2, "spammer": 1, "always_up": 1, "adversary": 1}
LANGUAGES = ["python", "typescript", "go", "rust"]
LINES = 4


@dataclass
class Filled:
    tokens: dict[str, str]
    honeypots: int
    completions: int
    ratings: int
    review_tasks: int
    run_ids: list[int] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)


def _code(k: int, language: str) -> str:
    return "\n".join(
        f"value_{k}_{line} = compute({k}, {line})  # {language}" for line in range(LINES)
    )


def retention_check(cid: uuid.UUID, k: int) -> EventIn:
    """The 5-minute check of completion ``k``: lines 0 and 3 kept, line 1 edited (distance
    1 to 5), line 2 deleted when ``k`` is even."""
    third = {"state": "unchanged"} if k % 2 else {"state": "deleted", "distance": 20}
    lines = [
        RetainedLine(line=0, state="unchanged"),
        RetainedLine(line=1, state="edited", distance=1 + k % 5, correction="value = 0"),
        RetainedLine(line=2, **third),
        RetainedLine(line=3, state="unchanged"),
    ]
    return EventIn(
        event_id=uuid.uuid4(), completion_id=cid, kind="retained", after_s=300.0, lines=lines
    )


def bearer(token: str) -> dict[str, str]:
    """The header an API call with ``token`` carries."""
    return {"Authorization": f"Bearer {token}"}


def login(url: str, token: str) -> httpx.Client:
    """An httpx client holding a dashboard session (the login form, CSRF included)."""
    http = httpx.Client(base_url=url, timeout=30)
    form = http.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    reply = http.post("/dashboard/login", data={"token": token, "csrf": csrf})
    assert reply.status_code == 303, reply.text
    return http


def page_csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def fill(store: Any, *, completions: int = 48, honeypots: int = 8, seed: int = 7) -> Filled:
    crowd = simulate_crowd(
        completions * LINES,
        len(NAMES),
        MIX,
        labels_per_item=(2, 4),
        honeypot_rate=0.0,
        seed=seed,
        lines_per_completion=LINES,
    )
    tokens = {name: store.new_token(name) for name in NAMES}
    kinds = dict(zip(NAMES, crowd.annotator_kind, strict=True))

    # Honeypots: the first completions, truth from the simulator, via the import form.
    admin = login(store.url, store.admin_token)
    page = admin.get("/dashboard/honeypots")
    rows = [
        json.dumps(
            {
                "prompt": f"# honeypot {k}\n",
                "text": _code(k, "python"),
                "language": "python",
                "truth": [int(crowd.truth[k * LINES + line]) for line in range(LINES)],
            }
        )
        for k in range(honeypots)
    ]
    reply = admin.post(
        "/dashboard/honeypots", data={"csrf": page_csrf(page.text), "jsonl": "\n".join(rows)}
    )
    admin.close()
    assert reply.status_code == 200 and f"imported {honeypots}" in reply.text, reply.text
    ids = _honeypot_ids(store, honeypots)

    # Completions, each owned by one annotator, with shown / accepted events.
    owners: dict[str, list[CompletionIn]] = {name: [] for name in NAMES}
    events: dict[str, list[EventIn]] = {name: [] for name in NAMES}
    for k in range(honeypots, completions):
        owner, language = NAMES[k % len(NAMES)], LANGUAGES[k % len(LANGUAGES)]
        ids[k] = uuid.uuid4()
        owners[owner].append(
            CompletionIn(
                id=ids[k],
                prompt=f"def f{k}():\n",
                language=language,
                text=_code(k, language),
                model="tiny",
                adapter_version=f"v{1 + (k // 3) % 2}",
            )
        )
        events[owner].append(EventIn(event_id=uuid.uuid4(), completion_id=ids[k], kind="shown"))
        if k % 3:
            kind = "accepted" if k % 2 else "partial"
            events[owner].append(EventIn(event_id=uuid.uuid4(), completion_id=ids[k], kind=kind))
            events[owner].append(retention_check(ids[k], k))
    ratings: dict[str, list[RatingIn]] = {name: [] for name in NAMES}
    labels = crowd.labels
    for item, ann, label in zip(labels.item_idx, labels.annotator_idx, labels.label, strict=True):
        k, line = divmod(int(item), LINES)
        ratings[NAMES[ann]].append(
            RatingIn(event_id=uuid.uuid4(), completion_id=ids[k], line=line, label=int(label))
        )
    for name in NAMES:
        with store.client(tokens[name]) as client:
            if owners[name]:
                client.post_completions(owners[name])
                client.post_events(events[name])
    _served(store, tokens, ratings)
    n_ratings = review_tasks = 0
    for name in NAMES:
        with store.client(tokens[name]) as client:
            for start in range(0, len(ratings[name]), 500):
                n_ratings += client.post_ratings(ratings[name][start : start + 500]).stored
            review_tasks += client.review_next() is not None  # served: counted by /metrics

    filled = Filled(tokens, honeypots, completions, n_ratings, review_tasks, kinds=kinds)
    with store.client(store.trainer_token) as trainer:
        for method in ("mv", "em2"):
            filled.run_ids.append(_aggregate_and_post(trainer, method))
    filled.adapters = _adapters(store, Path(store.data_dir) / "peft")
    return filled


def _honeypot_ids(store: Any, n: int) -> dict[int, uuid.UUID]:
    """Honeypot ids are the store's to choose (random): read them back in import order."""
    from crlhf_store.db import Database
    from crlhf_store.models import Completion
    from sqlalchemy import select

    db = Database(store.database_url, pool_size=1, max_overflow=0)
    try:
        with db.reading() as session:
            rows = session.execute(
                select(Completion.id, Completion.prompt).where(Completion.is_honeypot.is_(True))
            ).all()
    finally:
        db.dispose()
    by_prompt = {prompt: cid for cid, prompt in rows}
    return {k: by_prompt[f"# honeypot {k}\n"] for k in range(n)}


def _aggregate_and_post(trainer: Any, method: str) -> int:
    """What ``crlhf-train aggregate`` does: export, aggregate, rewards, post the run."""
    pages = [p.model_dump(mode="json") for p in trainer.iter_label_pages()]
    labels = LabelSet.from_export(pages)
    result = aggregate(labels, method)
    rewards = completion_rewards(result)
    run = AggregationRunIn(
        method=result.method,
        n_labels=labels.n_labels,
        n_items=labels.n_items,
        annotators=[
            AnnotatorReliabilityIn(
                annotator=a.annotator,
                reliability=_unit(a.reliability),
                low=_unit(a.low),
                high=_unit(a.high),
                spammer_score=_unit(a.spammer_score),
                flag=a.flag,  # type: ignore[arg-type]
                sensitivity=a.sensitivity,
                specificity=a.specificity,
                n_labels=a.n_labels,
            )
            for a in result.annotators
        ],
        rewards=[
            CompletionRewardIn(
                completion_id=cid, reward=_unit(r.mean), low=_unit(r.low), high=_unit(r.high)
            )
            for cid, r in rewards.items()
        ],
        metrics={"class_prior": result.class_prior},
    )
    return trainer.post_aggregation_run(run).id


def _unit(v: float) -> float:
    return min(1.0, max(0.0, float(v)))


def _adapters(store: Any, folder: Path) -> list[str]:
    """Two adapters: v1 (published by the trainer), v2 its child (a candidate)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    from crlhf_trainer.gate import gate

    # v2's gate as the trainer records it: a paired interval per metric, too few items here
    decision = gate({"heldout/conventions": [0.1, 0.3, 0.2]}, {"heldout/conventions": [0, 0, 0.1]})
    versions = []
    with store.client(store.trainer_token) as trainer:
        for version, parent, p1 in (("v1", None, 0.31), ("v2", "v1", 0.34)):
            metrics = {"humaneval/pass@1": p1, "mbpp/pass@1": p1 + 0.05, "gate": "ok"}
            if version == "v2":
                metrics |= {"gate": decision.reason(), "gate_decision": decision.to_json()}
            trainer.upload_adapter(
                folder, version=version, base_model="tiny", parent=parent, metrics=metrics
            )
            versions.append(version)
        trainer.publish_adapter("v1")
    return versions


def _served(store: Any, tokens: dict[str, str], ratings: dict[str, list[RatingIn]]) -> None:
    """Record the crowd's review tasks, as if the queue had served them: the store takes
    ratings only of one's own completions and of the tasks served to one."""
    from crlhf_store.db import Database
    from crlhf_store.models import Annotator, Completion, ReviewAssignment
    from sqlalchemy import select

    db = Database(store.database_url, pool_size=1, max_overflow=0)
    try:
        with db.writing() as s:
            ids = dict(s.execute(select(Annotator.name, Annotator.id)).all())
            authors = dict(s.execute(select(Completion.id, Completion.annotator_id)).all())
            for name in tokens:
                for cid in {r.completion_id for r in ratings[name]}:
                    if authors.get(cid) != ids[name]:
                        s.add(
                            ReviewAssignment(
                                id=uuid.uuid4(), annotator_id=ids[name], completion_id=cid
                            )
                        )
    finally:
        db.dispose()
