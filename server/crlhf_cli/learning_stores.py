"""Steps 1 and 2 of the learning benchmark (:mod:`crlhf_cli.learning`), through real stores.

1. **completions**: crlhf-lsp completes the training-side prompts into a store, every
   completion accepted and sent through its outbox with its logged token ids; with
   several samples per prompt, each round is a new crlhf-lsp session with its own
   sampling ``seed`` (its suggestion cache would answer a seen prompt with the same one).
2. **crowd**, per seed and crowd mix: a fresh store gets the same completions and the
   honeypots; a simulated crowd rates lines through review tasks; with
   ``cfg.corrections``, the developer who accepted the completions rewrites a share of
   the lines the scenario can fix, sent as ``retained`` events with their correction as
   crlhf-lsp's retention check would; the trainer pulls the store's export into a work dir.
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlhf_cli.crowd import TruthBook, make_crowd, rate_all
from crlhf_cli.learning_config import CROWDS, LearningConfig, Log
from crlhf_cli.services import DemoError, StoreProcess

__all__ = ["Collected", "collect", "crowd_round", "lsp_backend", "retention_events"]


@dataclass
class Collected:
    """One completion of a training prompt, as crlhf-lsp logged it, with its truth."""

    function: str
    completion_id: str
    text: str
    truth: list[int | None]
    fixes: list[str | None] = field(default_factory=list)
    """per line, a developer's rewrite of it (None: kept as it is): the scenario's own"""


# --- 1. completions through crlhf-lsp ---------------------------------------------------


def collect(
    cfg: LearningConfig,
    model_ref: Any,
    prompts: Sequence[Any],
    truth: Callable[[Any, str], list[int | None]],
    log: Log,
    fixes: Callable[[Any, str], list[str | None]] | None = None,
) -> tuple[list[Collected], list[dict]]:
    """Completions of ``prompts`` (each with ``key`` and ``prompt``) via crlhf-lsp into a
    store, judged by ``truth(prompt, text)`` and, with ``fixes``, each line's rewrite by a
    developer; returns them and the store's export."""
    from crlhf_contract.client import StoreClient

    samples, temperature = cfg.sampling()
    store = StoreProcess(cfg.work_dir / "collect")
    store.start()
    tokens = store.create_tokens([("developer", "annotator"), ("trainer", "trainer")])
    backend, model = lsp_backend(cfg, model_ref)
    settings = {
        "storeUrl": store.url,
        "token": tokens["developer"],
        "backend": backend,
        "model": model,
        "maxTokens": cfg.max_tokens,
        "temperature": temperature,
        "outboxPath": str(cfg.work_dir / "collect" / "outbox.sqlite3"),
        "device": cfg.device,
    }
    out: list[Collected] = []
    try:
        for seed in range(samples):
            out += _round(cfg, settings | {"seed": seed}, prompts, truth, log, fixes)
        with StoreClient(store.url, tokens["trainer"]) as client:
            exported = [c.model_dump(mode="json") for c in _all_completions(client)]
    finally:
        store.stop()
    if not out:
        raise DemoError(f"crlhf-lsp completed none of the prompts; see {cfg.work_dir}/collect")
    return out, exported


def _round(
    cfg: LearningConfig,
    settings: dict[str, Any],
    prompts: Sequence[Any],
    truth: Callable[[Any, str], list[int | None]],
    log: Log,
    fixes: Callable[[Any, str], list[str | None]] | None,
) -> list[Collected]:
    """One crlhf-lsp session completing every prompt once, its outbox emptied into the store."""
    from crlhf_cli.lsp import LspDriver

    lsp = LspDriver(settings, cfg.work_dir / "collect" / f"lsp-{settings['seed']}.log")
    out: list[Collected] = []
    try:
        lsp.start()
        lsp.wait_ready()
        for i, p in enumerate(prompts):
            c = lsp.complete(p.prompt)
            if c is None or not c.text.strip():
                continue
            lsp.accept(c)
            fixed = fixes(p, c.text) if fixes is not None else []
            out.append(Collected(p.key, c.id, c.text, truth(p, c.text), fixed))
            if (i + 1) % 10 == 0:
                log(f"  completions (seed {settings['seed']}): {i + 1}/{len(prompts)}")
        lsp.wait_outbox_empty()
    finally:
        lsp.stop()
    return out


def _all_completions(client: Any) -> list[Any]:
    rows, after = [], None
    while True:
        page = client.export_completions(after, 1000)
        rows.extend(page.completions)
        if page.next is None or not page.completions:
            return rows
        after = page.next


def lsp_backend(cfg: LearningConfig, ref: Any) -> tuple[str, str]:
    """crlhf-lsp's backend and model file for this bench: llama.cpp on the GGUF wherever
    crlhf-lsp's ``auto`` would choose it (a GGUF, llama-cpp-python, the CPU)."""
    import importlib.util

    backend = cfg.backend
    if backend == "auto":
        llamacpp = importlib.util.find_spec("llama_cpp") is not None
        backend = (
            "llamacpp" if ref.gguf is not None and llamacpp and cfg.device == "cpu" else "local"
        )
    return backend, str(ref.gguf if backend == "llamacpp" else ref.path)


# --- 2. the crowd, per seed --------------------------------------------------------------


def crowd_round(
    cfg: LearningConfig,
    crowd_name: str,
    seed: int,
    collected: Sequence[Collected],
    exported: Sequence[dict],
    pots: Sequence[Any],
) -> Path:
    """A fresh store, the same completions, a new crowd's ratings; returns the pulled work dir."""
    from crlhf_contract.client import StoreClient
    from crlhf_contract.schemas import CompletionIn
    from crlhf_trainer.pull import WorkDir, pull

    root = cfg.work_dir / f"{crowd_name}-seed{seed}"
    shutil.rmtree(root, ignore_errors=True)
    env = {"CRLHF_REVIEW_REDUNDANCY": str(cfg.redundancy), "CRLHF_HONEYPOT_WARMUP": "4"}
    store = StoreProcess(root / "store", env=env)
    store.start()
    try:
        members = make_crowd(cfg.annotators, CROWDS[crowd_name], seed)
        names = [("developer", "annotator"), ("trainer", "trainer")]
        tokens = store.create_tokens(names + [(a.name, "annotator") for a in members])
        for a in members:
            a.token = tokens[a.name]
        store.import_honeypots(list(pots))
        fields = set(CompletionIn.model_fields)
        batch = [
            CompletionIn.model_validate({k: v for k, v in c.items() if k in fields})
            for c in exported
        ]
        with StoreClient(store.url, tokens["developer"]) as dev:
            for i in range(0, len(batch), 100):
                dev.post_completions(batch[i : i + 100])
            if cfg.corrections:
                events = retention_events(collected, cfg.corrections, seed)
                for i in range(0, len(events), 100):
                    dev.post_events(events[i : i + 100])
        book = TruthBook()
        for c in collected:
            book.by_id[c.completion_id] = c.truth
        for h in pots:
            key = (h.prompt, h.text)
            book.by_content[key] = list(h.truth)
            book.honeypot_keys.add(key)
        rate_all(store.url, members, book, max_honeypots=cfg.max_honeypots, seed=seed)
        work = WorkDir(root / "trainer")
        with StoreClient(store.url, tokens["trainer"]) as client:
            pull(client, work)
    finally:
        store.stop()
    return root / "trainer"


def retention_events(collected: Sequence[Collected], share: float, seed: int) -> list[Any]:
    """One ``retained`` event per completion, as crlhf-lsp's 5-minute check would send it:
    each non-blank line ``unchanged``, except a ``share`` of those with a fix (drawn per
    ``seed``), ``edited`` with the fix as their correction."""
    from crlhf_contract.retention import RetainedLine
    from crlhf_contract.schemas import EventIn, completion_lines
    from crlhf_lsp.retention import edit_distance

    rng = random.Random(seed)
    events = []
    for c in collected:
        lines = []
        for i, line in enumerate(completion_lines(c.text)):
            if not line.strip():
                continue
            fix = c.fixes[i] if i < len(c.fixes) else None
            if fix is not None and rng.random() < share:
                d = max(1, edit_distance(line.rstrip(), fix.rstrip()))
                lines.append(RetainedLine(line=i, state="edited", distance=d, correction=fix))
            else:
                lines.append(RetainedLine(line=i, state="unchanged"))
        if lines:
            events.append(
                EventIn(
                    event_id=uuid.uuid4(),
                    completion_id=uuid.UUID(c.completion_id),
                    kind="retained",
                    after_s=300.0,
                    lines=lines,
                )
            )
    return events
