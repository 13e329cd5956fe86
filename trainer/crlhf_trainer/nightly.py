"""The nightly job, stage by stage: pull → aggregate → train → evaluate → gate and publish.

:func:`run_nightly` runs them all and returns a summary dict; each stage is also a function
of its own (the CLI's subcommands). Stages hand over through files in the work dir::

    WORK/labels.jsonl, completions.jsonl, cursor.json     pull (resumable)
    WORK/runs/<run>/train.json                            train: config, parent, report
    WORK/runs/<run>/heldout.jsonl                         rated completions kept out
    WORK/runs/<run>/adapter/                              the PEFT files (+ README.md)
    WORK/runs/<run>/eval.json                             candidate and baseline metrics
    WORK/runs/<run>/publish.json                          gate decision, version, status

Nothing is published unless every stage before it finished: an error anywhere raises
from the :class:`~crlhf_trainer.errors.CrlhfTrainError` hierarchy before the upload.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crlhf_contract.client import StoreClient
from crlhf_contract.schemas import (
    AggregationRunIn,
    AnnotatorReliabilityIn,
    CompletionRewardIn,
    completion_lines,
)
from crlhf_models.gguf_lora import gguf_artifact

from .corrections import night_corrections
from .errors import AdapterError, NoTrainingData, TrainConfigError
from .evaluate import EvalConfig
from .examples import Example, build_examples
from .gate import GateConfig
from .parent import parent_adapter, store_call
from .pull import WorkDir, pull
from .runs import main_rank, new_run, resumable_run, write_json
from .train import TrainConfig
from .trainset import recent_with_replay, split_examples

__all__ = [
    "NightlyConfig",
    "aggregate_work",
    "evaluate_run",
    "publish_run",
    "pull_work",
    "run_nightly",
    "train_run",
]

Progress = Callable[[str, int, int | None], None]
"""``progress(stage, advance, total)``: the CLI draws bars from it; ``None`` is silent."""


@dataclass
class NightlyConfig:
    store_url: str
    token: str | None
    model: str  # the base model: hub id or local path (recorded in the adapter)
    work_dir: Path = Path("crlhf-work")
    aggregation: str = "em2"  # em2 | paper | paper-l1 | mv
    # issue 17: each developer's retention verdicts (kept 👍, deleted or mostly rewritten 👎)
    # as labels of a pseudo-annotator implicit:<name>, whose reliability is learnt like anyone's
    implicit_labels: bool = True
    method: str = "pg"  # pg | pg-line | grpo | kto
    # issue 17: rewrites of accepted lines as KTO pairs (corrections.py), --method kto only
    corrections: str = "kto"  # off | kto
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    heldout_fraction: float = 0.1  # rated completions kept out of training, by id hash
    # what one night trains on: completions of the last window_days, plus a replay sample
    # of older ones (replay × the window's count), so a night neither retrains on every
    # rating ever nor forgets the team's older judgements; 0 days: everything
    window_days: float = 14.0
    replay: float = 0.5
    gate: GateConfig = field(default_factory=GateConfig)  # when a candidate may be published
    publish: bool = True  # False: upload nothing, report only
    continue_from_latest: bool = True  # train on top of the published adapter
    # (adapter dir, out dir) -> .gguf or None: the GGUF LoRA published next to the PEFT files
    gguf: Callable[[Path, Path], Path | None] | None = gguf_artifact


def _client(cfg: NightlyConfig) -> StoreClient:
    return StoreClient(cfg.store_url, cfg.token)


# --- stages -------------------------------------------------------------------------


def pull_work(cfg: NightlyConfig, progress: Progress | None = None) -> dict[str, int]:
    work = WorkDir(cfg.work_dir)
    with _client(cfg) as client:
        stats = pull(client, work, on_page=lambda kind, n: progress and progress("pull", n, None))
    return asdict(stats)


def aggregate_work(cfg: NightlyConfig, *, post: bool = True) -> tuple[dict[str, Any], dict]:
    """Aggregate every pulled label; returns (summary, rewards by completion id)."""
    from .rewards import aggregate_labels, pulled_labels

    work = WorkDir(cfg.work_dir)
    labels = pulled_labels(work, implicit=cfg.implicit_labels)
    if labels.n_labels == 0:
        raise NoTrainingData(
            f"no line ratings in {work.root} (is the store empty? run `crlhf-train pull`); "
            "developers rate accepted lines with 👍/👎 in their editor"
        )
    completions = work.completions()
    line_counts = {cid: len(completion_lines(c.get("text", ""))) for cid, c in completions.items()}
    result, rewards = aggregate_labels(labels, cfg.aggregation, line_counts)
    summary = {
        "method": result.method,
        "labels": labels.n_labels,
        "lines": labels.n_items,
        "annotators": labels.n_annotators,
        "flagged": sorted(a.annotator for a in result.annotators if a.flag != "ok"),
        "rated_completions": len(rewards),
    }
    if post and main_rank():
        run = AggregationRunIn(
            method=result.method,
            n_labels=labels.n_labels,
            n_items=labels.n_items,
            annotators=[
                AnnotatorReliabilityIn(**{k: _unit(v) for k, v in asdict(a).items()})
                for a in result.annotators
            ],
            rewards=[
                CompletionRewardIn(
                    completion_id=cid,
                    reward=r.mean,
                    low=r.low,
                    high=r.high,
                    line_posteriors=[_unit(round(p, 6)) for p in r.line_posteriors],
                )
                for cid, r in rewards.items()
            ],
            metrics={"class_prior": result.class_prior},
        )
        with _client(cfg) as client:
            store_call("posting the aggregation run", lambda: client.post_aggregation_run(run))
    return summary, rewards


def _unit(v: Any) -> Any:
    # Reliabilities are probabilities; float round-off must not fail the store's [0, 1].
    return min(1.0, max(0.0, v)) if isinstance(v, float) else v


def train_run(
    cfg: NightlyConfig,
    rewards: dict,
    progress: Progress | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Build examples, train, save the adapter; returns (run dir, train summary)."""
    from transformers import AutoTokenizer

    work = WorkDir(cfg.work_dir)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    examples, skipped = build_examples(
        work.completions(),
        rewards,
        tokenizer.decode,
        max_tokens=cfg.train.max_tokens,
        vocab_size=len(tokenizer),
        special_ids=frozenset(tokenizer.all_special_ids),
    )
    train_set, heldout = split_examples(examples, cfg.heldout_fraction)
    train_set, windowed = recent_with_replay(
        train_set, work.completions(), cfg.window_days, cfg.replay, seed=cfg.train.seed
    )
    run = resumable_run(work) if cfg.train.resume else new_run(work)
    parent, parent_dir = parent_adapter(cfg, lambda: _client(cfg), run)
    with open(run / "heldout.jsonl", "w") as f:
        for e in heldout:
            f.write(json.dumps(asdict(e)) + "\n")
    tcfg = cfg.train
    # GRPO and KTO have their own losses; TrainConfig.method only names ours.
    tcfg.method = cfg.method if cfg.method in ("pg", "pg-line") else "pg"
    on_step = (lambda step, _: progress("train", 1, tcfg.max_steps)) if progress else None
    extra, corrections = night_corrections(cfg, work, tokenizer)
    fit = _trainer(cfg.method)
    kw = {"init_adapter": parent_dir, "on_step": on_step} | extra
    report = fit(cfg.model, train_set, tcfg, run / "adapter", **kw)
    summary = {
        "method": cfg.method,
        "examples": len(train_set),
        "corrections": corrections,
        "window": windowed,
        "heldout": len(heldout),
        "skipped": asdict(skipped),
        "parent": parent,
        "parent_dir": str(parent_dir) if parent_dir else None,
        "model": cfg.model,
        "config": asdict(tcfg),
        "report": report.summary(),
        "history": report.history,  # per optimizer step (loss, kl, …): the training curve
    }
    write_json(run / "train.json", summary)
    return run, summary


def _trainer(method: str) -> Callable[..., Any]:
    """The method's training function: TRL's for grpo and kto, our loop for pg and pg-line."""
    if method == "grpo":
        from .grpo import train_grpo

        return train_grpo
    if method == "kto":
        from .kto import train_kto

        return train_kto
    from .train import train

    return train


def _load_heldout(run: Path) -> list[Example]:
    path = run / "heldout.jsonl"
    if not path.exists():
        return []
    return [Example(**json.loads(line)) for line in path.read_text().splitlines() if line]


def evaluate_run(
    cfg: NightlyConfig, run: Path, progress: Progress | None = None
) -> dict[str, dict[str, float]]:
    """Candidate and baseline metrics on the same problems and held-out completions."""
    from transformers import AutoTokenizer

    from .evaluate import evaluate
    from .lora import load_policy, resolve_device

    info = json.loads((run / "train.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    heldout = _load_heldout(run)
    n = len(cfg.eval.benchmarks) * (cfg.eval.limit or 0)
    tick = (lambda: progress("eval", 1, 2 * n)) if progress and n else None
    device = resolve_device(cfg.train.device)
    results: dict[str, dict[str, float]] = {}
    parent_dir = Path(info["parent_dir"]) if info.get("parent_dir") else None
    for name, adapter in (("baseline", parent_dir), ("candidate", run / "adapter")):
        if adapter is None:  # no parent: the base model with a zero adapter is the baseline
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(cfg.model).to(device)
        else:
            model = load_policy(
                cfg.model, cfg.train, adapter=adapter, device=device, trainable=False
            )
        results[name] = evaluate(model, tokenizer, cfg.eval, heldout, on_problem=tick)
        del model
    write_json(run / "eval.json", results)
    return results


def publish_run(cfg: NightlyConfig, run: Path) -> dict[str, Any]:
    """Gate the run's adapter against its baseline; upload it, publish it if it passed."""
    from .publish import new_version, publish, write_model_card

    info, metrics, adapter, decision = _gate_run(cfg, run)
    gate_json = decision.to_json()
    if not cfg.publish:
        out = {
            "decision": decision.reason(),
            "passed": decision.passed,
            "status": "not uploaded",
            "gate": gate_json,
        }
        write_json(run / "publish.json", out)
        return out
    version = new_version(adapter)
    write_model_card(
        adapter,
        version=version,
        base_model=cfg.model,
        parent=info.get("parent"),
        metrics=metrics["candidate"],
        baseline=metrics["baseline"],
        training={k: info[k] for k in ("method", "examples", "heldout")}
        | {"steps": info["report"]["steps"]},
        decision=decision,
    )
    gguf = _gguf(cfg, adapter, run)
    with _client(cfg) as client:
        result = publish(
            client,
            adapter,
            version=version,
            base_model=cfg.model,
            parent=info.get("parent"),
            metrics=metrics["candidate"],
            decision=decision,
            gguf=gguf,
        )
    out = {
        "version": result.version,
        "status": result.status,
        "sha256": result.sha256,
        "passed": decision.passed,
        "decision": decision.reason(),
        "parent": info.get("parent"),
        "gate": gate_json,
    }
    write_json(run / "publish.json", out)
    return out


def _gate_run(cfg: NightlyConfig, run: Path) -> tuple[dict, dict, Path, Any]:
    """The run's train record, its metrics, its adapter (verified) and the gate's decision."""
    from .gate import gate
    from .publish import verify_adapter

    info = json.loads((run / "train.json").read_text())
    eval_path = run / "eval.json"
    if not eval_path.exists():
        raise TrainConfigError(f"{run} has no eval.json; run `crlhf-train eval` before publishing")
    metrics = json.loads(eval_path.read_text())
    adapter = run / "adapter"
    verify_adapter(adapter)
    decision = gate(
        metrics["candidate"].get("items", {}), metrics["baseline"].get("items", {}), cfg.gate
    )
    return info, metrics, adapter, decision


def _gguf(cfg: NightlyConfig, adapter: Path, run: Path) -> Path | None:
    """The adapter's GGUF LoRA when the config asks for one."""
    if cfg.gguf is None:
        return None
    try:
        return cfg.gguf(adapter, run)
    except Exception as exc:  # the conversion is an extra: never publish half of it
        raise AdapterError(f"converting {adapter} to GGUF failed: {exc}") from exc


def run_nightly(cfg: NightlyConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The whole job; returns a summary dict (also written to ``<run>/summary.json``)."""
    if cfg.method not in ("pg", "pg-line", "grpo", "kto"):
        raise TrainConfigError(f"unknown method {cfg.method!r}; use pg, pg-line, grpo or kto")
    if cfg.corrections not in ("off", "kto"):
        raise TrainConfigError(f"--corrections {cfg.corrections!r}: use off or kto")
    cfg.eval.validate()
    summary: dict[str, Any] = {"pull": pull_work(cfg, progress)}
    summary["aggregate"], rewards = aggregate_work(cfg)
    run, summary["train"] = train_run(cfg, rewards, progress)
    summary["run"] = str(run)
    summary["eval"] = evaluate_run(cfg, run, progress)
    summary["publish"] = publish_run(cfg, run)
    write_json(run / "summary.json", summary)
    return summary
