"""Does the loop make the model better? The learning benchmark, through the real parts.

One run of :func:`run_learning` (``bench/learning.py``; scenarios ``conventions`` and
``execution`` in :mod:`crlhf_cli.learning_scenarios`):

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
   correc-  on request, with ``--corrections``: no credit from the ratings, KTO on the
   tions    developer's correction pairs alone
   ======== =============================================================================

4. **evaluate** on held-out work: for ``conventions``, teacher-forced on reference bodies
   of modules never rated, ``m = mean log p(rule-breaking body lines) − mean log
   p(conforming body lines)`` per function (nats/token), improvement
   ``d = −(m_adapter − m_base)``; for ``execution``, ``d = pass@1_adapter − pass@1_base``
   per MBPP test problem. Both with the guard (a) and the trainer's gate decision.

The parts, a module each: the configuration (:mod:`crlhf_cli.learning_config`), steps 1
and 2 (:mod:`crlhf_cli.learning_stores`), the arms' credit (:mod:`crlhf_cli.learning_arms`),
the evaluation (:mod:`crlhf_cli.learning_eval`), the results (:mod:`crlhf_cli.learning_result`);
statistics (intervals over items and seeds, recovery) in :mod:`crlhf_cli.learning_stats`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crlhf_cli.learning_arms import arm_rewards, line_accuracy
from crlhf_cli.learning_config import CORRECTIONS_ARM, LearningConfig, Log
from crlhf_cli.learning_result import LearningResult, RunResult
from crlhf_cli.learning_scenarios import Scenario, Scores, make_scenario
from crlhf_cli.learning_stores import Collected, collect, crowd_round

__all__ = ["run_learning"]


def run_learning(cfg: LearningConfig, log: Log = print) -> LearningResult:
    """Steps 1–4 of the module docstring for every crowd, seed, method and arm."""
    from crlhf_models import resolve_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg.validate()
    started = time.monotonic()
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    ref = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    scenario = make_scenario(cfg, ref, tokenizer, log)
    log(
        f"model {ref.model_id}; scenario {scenario.name}: {len(scenario.prompts)} prompts, "
        f"{len(scenario.honeypots)} honeypots, {len(scenario.items)} held-out items"
    )
    base = AutoModelForCausalLM.from_pretrained(ref.path)
    base_scores = scenario.score(base, None)
    del base
    collected, exported = collect(cfg, ref, scenario.prompts, scenario.truth, log, scenario.fixes)
    result = _new_result(cfg, scenario, base_scores, collected, log)
    pots = scenario.honeypots
    bench = _Bench(cfg, ref, tokenizer, scenario, base_scores)
    for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        for crowd_name in cfg.crowds:
            work = crowd_round(cfg, crowd_name, seed, collected, exported, pots)
            result.accuracy[f"{crowd_name}/{seed}"] = line_accuracy(work, collected)
            _run_arms(bench, work, collected, result, crowd_name, seed, log)
    result.seconds = time.monotonic() - started
    _save(cfg, result)
    return result


def _new_result(
    cfg: LearningConfig,
    scenario: Scenario,
    base: Scores,
    collected: Sequence[Collected],
    log: Log,
) -> LearningResult:
    """The bench's result before any arm ran: its config, items, completions, base scores."""
    rated = [t for c in collected for t in c.truth if t is not None]
    result = LearningResult(
        config=json.loads(json.dumps(asdict(cfg), default=str)),
        items=[it.key for it in scenario.items],
        base_margin=base.metric,
        completions=len(collected),
        lines=len(rated),
        share_breaking=sum(t < 0 for t in rated) / max(1, len(rated)),
        base_pair=base.pair,
        unit=scenario.unit,
    )
    log(
        f"{len(collected)} completions, {len(rated)} lines with a truth, "
        f"{result.share_breaking:.0%} wrong; base metric "
        f"{sum(base.metric) / max(1, len(base.metric)):.3f}"
    )
    return result


@dataclass
class _Bench:
    """What every run of one bench shares: its config, model, scenario and base scores."""

    cfg: LearningConfig
    ref: Any
    tokenizer: Any
    scenario: Scenario
    base: Scores


def _run_arms(
    bench: _Bench,
    work: Path,
    collected: Sequence[Collected],
    result: LearningResult,
    crowd_name: str,
    seed: int,
    log: Log,
) -> None:
    """Every method and arm on one crowd's pulled export, each run saved as it ends."""
    cfg, scenario = bench.cfg, bench.scenario
    for method in cfg.methods:
        for arm in cfg.arms:
            if arm == "truth" and crowd_name != cfg.crowds[0]:
                continue  # the truth does not depend on the crowd
            if arm == CORRECTIONS_ARM and method != "kto":
                continue  # only KTO learns from corrections
            run = _train_and_score(bench, work, collected, crowd_name, seed, method, arm)
            result.runs.append(run)
            _save(cfg, result)  # after every run: a bench stopped early keeps them
            log(
                f"  {crowd_name} seed {seed} {method} {arm}: d = "
                f"{sum(run.improvement) / len(run.improvement):+.3f} {scenario.unit}, guard "
                f"{sum(run.pair) / max(1, len(run.pair)):+.3f}, gate {run.gate.get('decision')} "
                f"({run.train_seconds:.0f} s, KL {run.final_kl or 0:.2f}, "
                f"{run.backtracks} step halving(s){', ' + run.stopped if run.stopped else ''}"
                f"{f', {run.corrections} correction pair(s)' if run.corrections else ''})"
            )


def _save(cfg: LearningConfig, result: LearningResult) -> None:
    tmp = cfg.work_dir / "learning.json.tmp"
    tmp.write_text(json.dumps(asdict(result), indent=1) + "\n")
    tmp.replace(cfg.work_dir / "learning.json")


def _train_and_score(
    bench: _Bench,
    work: Path,
    collected: Sequence[Collected],
    crowd_name: str,
    seed: int,
    method: str,
    arm: str,
) -> RunResult:
    """Train one arm's adapter on its credit, then score it against the base."""
    from crlhf_trainer.errors import NoTrainingData
    from crlhf_trainer.examples import build_examples
    from crlhf_trainer.pull import WorkDir
    from crlhf_trainer.train import load_policy, train

    cfg, scenario, base = bench.cfg, bench.scenario, bench.base
    examples: list[Any] = []
    if arm != CORRECTIONS_ARM:  # that arm has no credit, so no examples: its pairs alone
        examples, _ = build_examples(
            WorkDir(work).completions(),
            arm_rewards(arm, work, collected, seed),
            bench.tokenizer.decode,
            max_tokens=cfg.max_train_tokens,
        )
    tcfg = _train_config(cfg, method, seed)
    out = cfg.work_dir / "adapters" / f"{crowd_name}-{seed}-{method}-{arm}"
    shutil.rmtree(out, ignore_errors=True)  # a rerun's GGUF LoRA must not be the last run's
    pairs = _correction_pairs(bench, work) if method == "kto" else []
    try:
        if method == "kto":  # TRL's KTOTrainer on the rated lines (crlhf_trainer.kto)
            from crlhf_trainer.kto import train_kto

            report = train_kto(str(bench.ref.path), examples, tcfg, out, corrections=pairs)
        else:
            report = train(str(bench.ref.path), examples, tcfg, out)
    except NoTrainingData as exc:  # no spread in this arm's credit: the base model stays
        unchanged = [0.0 for q in base.pair if q is not None]
        zero = [0.0] * len(base.metric)
        return RunResult(crowd_name, seed, method, arm, zero, 0.0, 0, None, str(exc), 0, unchanged)
    policy = load_policy(str(bench.ref.path), tcfg, adapter=out, trainable=False)
    after = scenario.score(policy, out)
    del policy
    final = report.final_kl
    if final is None and report.history:
        final = report.history[-1].get("kl")
    pair = [a - b for a, b in zip(after.pair, base.pair, strict=True) if b is not None]
    return RunResult(
        crowd_name,
        seed,
        method,
        arm,
        scenario.improvement(after.metric, base.metric),
        report.seconds,
        report.steps,
        final,
        report.stopped,
        report.backtracks,
        pair,
        scenario.gate(after, base),
        corrections=len(pairs),
    )


def _correction_pairs(bench: _Bench, work: Path) -> list[Any]:
    """The developer's corrections in the pulled export as KTO pairs (none unless the bench
    sent some: ``--corrections``), as the nightly trainer builds them."""
    if not bench.cfg.corrections:
        return []
    from crlhf_trainer.corrections import pulled_pairs
    from crlhf_trainer.pull import WorkDir

    pairs, _ = pulled_pairs(WorkDir(work), bench.tokenizer, bench.cfg.max_train_tokens)
    return pairs


def _train_config(cfg: LearningConfig, method: str, seed: int) -> Any:
    from crlhf_trainer.train import TrainConfig

    return TrainConfig(
        method="pg-line" if method == "kto" else method,
        max_steps=cfg.steps,
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        lr=cfg.lr,
        warmup_steps=1,
        kl_coef=cfg.kl_coef,
        kl_stop=cfg.kl_stop,
        kl_backtracks=cfg.kl_backtracks,
        importance=cfg.importance,
        negative_weight=cfg.negative_weight,
        seed=seed,
        device=cfg.device,
        max_tokens=cfg.max_train_tokens,
    )
