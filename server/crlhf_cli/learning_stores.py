"""Steps 1 and 2 of the learning benchmark (:mod:`crlhf_cli.learning`), through real stores.

1. **completions**: crlhf-lsp completes the training-side prompts into a store, every
   completion accepted and sent through its outbox with its logged token ids; with
   several samples per prompt, each round is a new crlhf-lsp session with its own
   sampling ``seed`` (its suggestion cache would answer a seen prompt with the same one).
2. **crowd**, per seed and crowd mix: a fresh store gets the same completions and the
   honeypots; a simulated crowd rates lines through review tasks; the trainer pulls the
   store's export into a work dir.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crlhf_cli.crowd import TruthBook, make_crowd, rate_all
from crlhf_cli.learning_config import CROWDS, LearningConfig, Log
from crlhf_cli.services import DemoError, StoreProcess

__all__ = ["Collected", "collect", "crowd_round", "lsp_backend"]


@dataclass
class Collected:
    """One completion of a training prompt, as crlhf-lsp logged it, with its truth."""

    function: str
    completion_id: str
    text: str
    truth: list[int | None]


# --- 1. completions through crlhf-lsp ---------------------------------------------------


def collect(
    cfg: LearningConfig,
    model_ref: Any,
    prompts: Sequence[Any],
    truth: Callable[[Any, str], list[int | None]],
    log: Log,
) -> tuple[list[Collected], list[dict]]:
    """Completions of ``prompts`` (each with ``key`` and ``prompt``) via crlhf-lsp into a
    store, judged by ``truth(prompt, text)``; returns them and the store's export."""
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
            out += _round(cfg, settings | {"seed": seed}, prompts, truth, log)
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
            out.append(Collected(p.key, c.id, c.text, truth(p, c.text)))
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
