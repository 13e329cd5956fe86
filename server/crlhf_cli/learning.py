"""Does the loop make the model better? The learning benchmark, through the real parts.

One run of :func:`run_learning` (``bench/learning.py``; scenario in
:mod:`crlhf_cli.conventions`):

1. **completions**: crlhf-lsp (llama.cpp on a GGUF, or transformers) completes the
   training-side prompts as an editor asks for ghost text; every completion is accepted
   and reaches a store through crlhf-lsp's outbox, with its logged token ids.
2. **crowd**, per seed and crowd mix: a fresh SQLite store gets the same completions
   (``POST /v1/completions``) and the honeypots; a simulated crowd, redrawn per seed,
   rates lines through ``GET /v1/review/next`` and ``POST /v1/ratings``.
3. **trainer**: ``pull`` the store's export into a work dir (the trainer never sees the
   truth), aggregate (em2, majority vote), turn posteriors into rewards
   (:func:`crlhf_trainer.rewards.aggregate_labels`), build examples from the logged ids,
   train a LoRA adapter (:func:`crlhf_trainer.train.train`) per arm at the same label
   budget:

   ======== =============================================================================
   truth    the scenario's own truth (the ceiling)
   em2      two-coin EM posteriors
   mv       majority vote
   single   one random label per line (no redundancy: a third of the budget)
   random   em2's posteriors shuffled across lines (no information: the floor)
   ======== =============================================================================

4. **evaluate**, teacher-forced on held-out reference bodies (modules never rated):
   ``m = mean log p(rule-breaking body lines) − mean log p(conforming body lines)`` per
   function (nats/token), improvement ``d = −(m_adapter − m_base)``.

Statistics (intervals over items and seeds, recovery) are in :mod:`crlhf_cli.learning_stats`.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from crlhf_cli import conventions as conv
from crlhf_cli.crowd import DEFAULT_MIX, TruthBook, make_crowd, rate_all
from crlhf_cli.services import DemoError, StoreProcess

__all__ = ["ARMS", "CROWDS", "LearningConfig", "run_learning"]

ARMS = ("truth", "em2", "mv", "single", "random")
CROWDS: dict[str, dict[str, float]] = {
    "default": dict(DEFAULT_MIX),
    "hostile": {"reliable": 0.3, "mediocre": 0.1, "adversary": 0.4, "always_up": 0.2},
}

Log = Callable[[str], None]


METHODS = ("pg-line", "pg", "kto")
"""Training methods an arm can use: our loop's two variants, or TRL's KTO on rated lines."""


@dataclass
class LearningConfig:
    work_dir: Path = Path("crlhf-learning")
    model: str | None = None  # crlhf_models spec: None → $CRLHF_MODEL or the default
    backend: str = "auto"  # crlhf-lsp's backend for the completions
    prompts: int = 48  # training-side prompts completed by crlhf-lsp
    heldout: int = 60  # held-out reference functions scored teacher-forced
    honeypots: int = 16
    annotators: int = 12
    redundancy: int = 3  # crowd ratings per completion (the label budget)
    max_honeypots: int = 6  # honeypots one annotator answers at most
    max_tokens: int = 48  # completion tokens (crlhf-lsp's maxTokens)
    crowds: tuple[str, ...] = ("default", "hostile")
    arms: tuple[str, ...] = ARMS
    methods: tuple[str, ...] = ("pg-line",)
    seeds: int = 3
    first_seed: int = 0  # seeds first_seed … first_seed + seeds − 1 (a later run adds seeds)
    steps: int = 8
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    kl_coef: float = 0.05
    kl_stop: float = 1.0  # nats/token: Gemma 3 270M passes 0.5 within two steps at lr 2e-4
    max_train_tokens: int = 320  # prompt + completion kept for training
    max_eval_tokens: int = 256  # of each held-out function
    device: str = "cpu"

    def validate(self) -> LearningConfig:
        unknown = (set(self.arms) - set(ARMS)) | (set(self.crowds) - set(CROWDS))
        if unknown:
            raise DemoError(f"unknown arm or crowd {sorted(unknown)}; arms {ARMS}, crowds {CROWDS}")
        if set(self.methods) - set(METHODS):
            raise DemoError(f"unknown method in {self.methods}; use of {METHODS}")
        if {"truth", "random"} - set(self.arms):
            raise DemoError("recovery needs the truth and random arms; keep both in --arms")
        return self


@dataclass
class Collected:
    """One completion of a training prompt, as crlhf-lsp logged it, with its truth."""

    function: str
    completion_id: str
    text: str
    truth: list[int | None]


@dataclass
class RunResult:
    crowd: str
    seed: int
    method: str
    arm: str
    improvement: list[float]  # d per held-out item
    train_seconds: float
    steps: int
    final_kl: float | None
    stopped: str | None


@dataclass
class LearningResult:
    config: dict[str, Any]
    items: list[str]
    base_margin: list[float]
    completions: int
    lines: int
    share_breaking: float
    runs: list[RunResult] = field(default_factory=list)
    accuracy: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def table(
        self, crowd: str, method: str, arm: str, seeds: set[int] | None = None
    ) -> list[list[float]]:
        """[seeds][items] improvements of one arm (truth is the same for every crowd),
        of every seed it ran or of ``seeds`` only."""
        rows = [
            r
            for r in self.runs
            if r.method == method and r.arm == arm and (arm == "truth" or r.crowd == crowd)
        ]
        rows = [r for r in rows if seeds is None or r.seed in seeds]
        return [r.improvement for r in sorted(rows, key=lambda r: r.seed)]

    def paired(self, crowd: str, method: str, *arms: str) -> list[list[list[float]]]:
        """The tables of ``arms`` on the seeds they all ran (what a paired interval needs)."""
        runs = [r for r in self.runs if r.method == method]
        common = set.intersection(
            *(
                {r.seed for r in runs if r.arm == a and (a == "truth" or r.crowd == crowd)}
                for a in arms
            )
        )
        return [self.table(crowd, method, a, common) for a in arms]

    @classmethod
    def load(cls, path: Path) -> LearningResult:
        data = json.loads(Path(path).read_text())
        data["runs"] = [RunResult(**r) for r in data["runs"]]
        return cls(**data)

    def merge(self, other: LearningResult) -> LearningResult:
        """Runs of another bench on the same completions and held-out items (more seeds,
        crowds or arms); a seed run twice is kept once."""
        if other.items != self.items or other.base_margin != self.base_margin:
            raise DemoError("runs to merge must share the held-out items and the base model")
        if other.completions != self.completions or other.lines != self.lines:
            raise DemoError("runs to merge must share the completions")
        seen = {(r.crowd, r.seed, r.method, r.arm) for r in self.runs}
        runs = self.runs + [r for r in other.runs if (r.crowd, r.seed, r.method, r.arm) not in seen]
        config = dict(self.config)
        for key in ("crowds", "arms", "methods"):
            config[key] = list(dict.fromkeys([*self.config[key], *other.config[key]]))
        return replace(
            self,
            config=config,
            runs=runs,
            accuracy={**self.accuracy, **other.accuracy},
            seconds=self.seconds + other.seconds,
        )


# --- 1. completions through crlhf-lsp ---------------------------------------------------


def collect(
    cfg: LearningConfig, model_ref: Any, prompts: Sequence[conv.Function], log: Log
) -> tuple[list[Collected], list[dict]]:
    """Completions of ``prompts`` via crlhf-lsp into a store; returns them and the export."""
    from crlhf_contract.client import StoreClient

    from crlhf_cli.lsp import LspDriver

    store = StoreProcess(cfg.work_dir / "collect")
    store.start()
    tokens = store.create_tokens([("developer", "annotator"), ("trainer", "trainer")])
    backend, model = _lsp_backend(cfg, model_ref)
    settings = {
        "storeUrl": store.url,
        "token": tokens["developer"],
        "backend": backend,
        "model": model,
        "maxTokens": cfg.max_tokens,
        "temperature": 0.0,
        "outboxPath": str(cfg.work_dir / "collect" / "outbox.sqlite3"),
        "device": cfg.device,
    }
    lsp = LspDriver(settings, cfg.work_dir / "collect" / "lsp.log")
    out: list[Collected] = []
    try:
        lsp.start()
        lsp.wait_ready()
        for i, f in enumerate(prompts):
            c = lsp.complete(f.prompt)
            if c is None or not c.text.strip():
                continue
            lsp.accept(c)
            out.append(Collected(f.key, c.id, c.text, conv.line_truth(c.text, f.head)))
            if (i + 1) % 10 == 0:
                log(f"  completions: {i + 1}/{len(prompts)}")
        lsp.wait_outbox_empty()
        with StoreClient(store.url, tokens["trainer"]) as client:
            exported = [c.model_dump(mode="json") for c in _all_completions(client)]
    finally:
        lsp.stop()
        store.stop()
    if not out:
        raise DemoError(f"crlhf-lsp completed none of the prompts; see {cfg.work_dir}/collect")
    return out, exported


def _all_completions(client: Any) -> list[Any]:
    rows, after = [], None
    while True:
        page = client.export_completions(after, 1000)
        rows.extend(page.completions)
        if page.next is None or not page.completions:
            return rows
        after = page.next


def _lsp_backend(cfg: LearningConfig, ref: Any) -> tuple[str, str]:
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


# --- 3. arms: credit from the same export ---------------------------------------------


def arm_rewards(
    arm: str, work_dir: Path, collected: Sequence[Collected], seed: int
) -> dict[str, Any]:
    """Rewards (per completion, with line posteriors) of one arm, from the pulled export."""
    import numpy as np
    from crlhf_contract.schemas import completion_lines
    from crlhf_trainer.aggregation import AggregationResult, aggregate
    from crlhf_trainer.aggregation.labels import LabelSet, item_key
    from crlhf_trainer.pull import WorkDir
    from crlhf_trainer.rewards import completion_rewards

    work = WorkDir(work_dir)
    labels = LabelSet.from_export(work.label_pages())
    completions = work.completions()
    counts = {cid: len(completion_lines(c.get("text", ""))) for cid, c in completions.items()}
    ours = {c.completion_id for c in collected}
    rng = np.random.default_rng(seed)
    if arm == "truth":
        items = [
            item_key(c.completion_id, i)
            for c in collected
            for i, t in enumerate(c.truth)
            if t is not None
        ]
        truth = {item_key(c.completion_id, i): t for c in collected for i, t in enumerate(c.truth)}
        p = np.array([1.0 if truth[i] > 0 else 0.0 for i in items])
        result = AggregationResult("truth", items, p, [], float(p.mean()) if len(p) else 0.5)
    elif arm in ("em2", "mv"):
        result = aggregate(labels, arm)
    elif arm == "random":
        em2 = aggregate(labels, "em2")
        result = replace(em2, method="random", p_correct=rng.permutation(em2.p_correct))
    elif arm == "single":
        order = rng.permutation(labels.n_labels)
        first: dict[int, int] = {}
        for k in order:
            first.setdefault(int(labels.item_idx[k]), int(labels.label[k]))
        items = [labels.items[i] for i in sorted(first)]
        p = np.array([1.0 if first[i] > 0 else 0.0 for i in sorted(first)])
        result = AggregationResult("single", items, p, [], float(p.mean()) if len(p) else 0.5)
    else:
        raise DemoError(f"unknown arm {arm!r}")
    rewards = completion_rewards(result, counts)
    return {cid: r for cid, r in rewards.items() if cid in ours}


# --- 4. evaluation: teacher-forced on held-out reference bodies --------------------------


@dataclass
class EvalItem:
    key: str
    ids: list[int]
    breaking: list[int]  # token positions (into ids) on rule-breaking body lines
    conforming: list[int]


def eval_items(
    tokenizer: Any, functions: Sequence[conv.Function], limit: int, max_tokens: int
) -> list[EvalItem]:
    """Held-out functions with both rule-breaking and conforming body lines."""
    out: list[EvalItem] = []
    for f in functions:
        text = f"# {f.module}\n{f.source}\n"
        enc = tokenizer(text, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"][:max_tokens], enc["offset_mapping"][:max_tokens]
        starts, pos = [], 0
        for line in text.split("\n"):
            starts.append(pos)
            pos += len(line) + 1
        lines = text.split("\n")
        skip = {n + 1 for n in _docstring_lines(f.source)}  # +1: the module comment line
        kind = {}
        for n, line in enumerate(lines):
            if n < 2 or n in skip or not line.strip() or line.strip().startswith("#"):
                continue  # the module comment, the def line, docstrings, blanks, comments
            kind[n] = "breaking" if conv.breaks(line) else "conforming"
        breaking, conforming = [], []
        for t, (a, b) in enumerate(offsets):
            if b <= a:
                continue  # special tokens
            n = max(k for k, s in enumerate(starts) if s <= a)
            if kind.get(n) == "breaking":
                breaking.append(t)
            elif kind.get(n) == "conforming":
                conforming.append(t)
        if breaking and conforming:
            out.append(EvalItem(f.key, list(ids), breaking, conforming))
        if len(out) >= limit:
            break
    return out


def _docstring_lines(source: str) -> set[int]:
    """0-based lines of ``source`` (one function) that belong to its docstring."""
    import ast

    try:
        fn = ast.parse(source).body[0]
    except (SyntaxError, IndexError):
        return set()
    body = getattr(fn, "body", [])
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(getattr(body[0], "value", None), ast.Constant)
    ):
        first = body[0]
        return set(range(first.lineno - 1, (first.end_lineno or first.lineno)))
    return set()


def margins(model: Any, items: Sequence[EvalItem]) -> list[float]:
    """m per item: mean log p of breaking-line tokens − of conforming-line tokens."""
    import torch

    device = next(model.parameters()).device
    out = []
    model.eval()
    with torch.no_grad():
        for it in items:
            targets = [t for t in it.breaking + it.conforming if t > 0]
            ids = torch.tensor([it.ids], device=device)
            # the token at t is predicted by the logit at t − 1; the 262k-wide head runs on
            # those positions only (logits_to_keep takes indices)
            keep = torch.tensor([t - 1 for t in targets], device=device)
            logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits[0].float()
            picked = logits.gather(1, ids[0, targets, None])[:, 0] - logits.logsumexp(-1)
            logp = dict(zip(targets, picked.tolist(), strict=True))
            bad = [logp[t] for t in it.breaking if t > 0]
            good = [logp[t] for t in it.conforming if t > 0]
            out.append(sum(bad) / len(bad) - sum(good) / len(good))
    return out


# --- the whole run ----------------------------------------------------------------------


def run_learning(cfg: LearningConfig, log: Log = print) -> LearningResult:
    """Steps 1–4 of the module docstring for every crowd, seed, method and arm."""
    from crlhf_models import resolve_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg.validate()
    started = time.monotonic()
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    ref = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    train_side, heldout_side = conv.split(conv.stdlib_functions())
    rng = random.Random(0)
    rng.shuffle(train_side)
    prompts = train_side[: cfg.prompts]
    pots = conv.honeypots(train_side[cfg.prompts :], cfg.honeypots)
    items = eval_items(tokenizer, heldout_side, cfg.heldout, cfg.max_eval_tokens)
    log(
        f"model {ref.model_id}; {len(prompts)} prompts, {len(pots)} honeypots, "
        f"{len(items)} held-out items"
    )
    base = AutoModelForCausalLM.from_pretrained(ref.path)
    base_margin = margins(base, items)
    del base
    collected, exported = collect(cfg, ref, prompts, log)
    rated = [t for c in collected for t in c.truth if t is not None]
    result = LearningResult(
        config=json.loads(json.dumps(asdict(cfg), default=str)),
        items=[it.key for it in items],
        base_margin=base_margin,
        completions=len(collected),
        lines=len(rated),
        share_breaking=sum(t < 0 for t in rated) / max(1, len(rated)),
    )
    log(
        f"{len(collected)} completions, {len(rated)} rated lines, "
        f"{result.share_breaking:.0%} break a rule"
    )
    for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        for crowd_name in cfg.crowds:
            work = crowd_round(cfg, crowd_name, seed, collected, exported, pots)
            result.accuracy[f"{crowd_name}/{seed}"] = _accuracy(work, collected)
            for method in cfg.methods:
                for arm in cfg.arms:
                    if arm == "truth" and crowd_name != cfg.crowds[0]:
                        continue  # the truth does not depend on the crowd
                    run = _train_and_score(
                        cfg,
                        ref,
                        tokenizer,
                        work,
                        collected,
                        items,
                        base_margin,
                        crowd_name,
                        seed,
                        method,
                        arm,
                    )
                    result.runs.append(run)
                    _save(cfg, result)  # after every run: a bench stopped early keeps them
                    log(
                        f"  {crowd_name} seed {seed} {method} {arm}: d = "
                        f"{sum(run.improvement) / len(run.improvement):+.3f} nats/token "
                        f"({run.train_seconds:.0f} s{', ' + run.stopped if run.stopped else ''})"
                    )
    result.seconds = time.monotonic() - started
    _save(cfg, result)
    return result


def _save(cfg: LearningConfig, result: LearningResult) -> None:
    tmp = cfg.work_dir / "learning.json.tmp"
    tmp.write_text(json.dumps(asdict(result), indent=1) + "\n")
    tmp.replace(cfg.work_dir / "learning.json")


def _train_and_score(
    cfg, ref, tokenizer, work, collected, items, base_margin, crowd_name, seed, method, arm
) -> RunResult:  # type: ignore[no-untyped-def]
    from crlhf_trainer.errors import NoTrainingData
    from crlhf_trainer.examples import build_examples
    from crlhf_trainer.pull import WorkDir
    from crlhf_trainer.train import TrainConfig, load_policy, train

    rewards = arm_rewards(arm, work, collected, seed)
    examples, _ = build_examples(
        WorkDir(work).completions(), rewards, tokenizer.decode, max_tokens=cfg.max_train_tokens
    )
    tcfg = TrainConfig(
        method="pg-line" if method == "kto" else method,
        max_steps=cfg.steps,
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        lr=cfg.lr,
        warmup_steps=1,
        kl_coef=cfg.kl_coef,
        kl_stop=cfg.kl_stop,
        seed=seed,
        device=cfg.device,
        max_tokens=cfg.max_train_tokens,
    )
    out = cfg.work_dir / "adapters" / f"{crowd_name}-{seed}-{method}-{arm}"
    try:
        if method == "kto":  # TRL's KTOTrainer on the rated lines (crlhf_trainer.kto)
            from crlhf_trainer.kto import train_kto

            report = train_kto(str(ref.path), examples, tcfg, out)
        else:
            report = train(str(ref.path), examples, tcfg, out)
    except NoTrainingData as exc:  # no spread in this arm's credit: the base model stays
        return RunResult(crowd_name, seed, method, arm, [0.0] * len(items), 0.0, 0, None, str(exc))
    policy = load_policy(str(ref.path), tcfg, adapter=out, trainable=False)
    after = margins(policy, items)
    del policy
    final = report.history[-1].get("kl") if report.history else None
    improvement = [-(a - b) for a, b in zip(after, base_margin, strict=True)]
    return RunResult(
        crowd_name,
        seed,
        method,
        arm,
        improvement,
        report.seconds,
        report.steps,
        final,
        report.stopped,
    )


def _accuracy(work: Path, collected: Sequence[Collected]) -> dict[str, Any]:
    """em2, majority vote and a single label against the truth, with their baselines."""
    from dataclasses import asdict as as_dict

    from crlhf_cli.learning_stats import line_scores

    out = {}
    for arm in ("em2", "mv", "single"):
        rewards = arm_rewards(arm, work, collected, seed=0)
        p, t = [], []
        for c in collected:
            r = rewards.get(c.completion_id)
            if r is None:
                continue
            for i, truth in enumerate(c.truth):
                if truth is not None and i < len(r.line_posteriors):
                    p.append(r.line_posteriors[i])
                    t.append(truth)
        out[arm] = as_dict(line_scores(p, t)) if t else None
    return out
