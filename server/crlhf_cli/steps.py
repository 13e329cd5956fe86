"""The demo's steps, in order (see :mod:`crlhf_cli.demo`), with progress bars."""

from __future__ import annotations

import contextlib
import importlib.util
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crlhf_cli import conventions
from crlhf_cli.crowd import SimAnnotator, TruthBook, make_crowd, rate_all
from crlhf_cli.demo import DemoConfig
from crlhf_cli.lsp import Completion, LspDriver
from crlhf_cli.problems import (
    DemoProblem,
    conventions_problems,
    honeypots,
    humaneval_tail,
    line_truth,
    mbpp_train,
)
from crlhf_cli.services import DemoError, StoreProcess

__all__ = ["Demo", "Rated", "summary_rows"]


@dataclass
class Rated:
    """One accepted completion and what execution says of it."""

    problem: DemoProblem
    completion: Completion
    passed: bool
    truth: list[int | None]


class Demo:
    def __init__(self, cfg: DemoConfig, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.work: Path = cfg.work_dir
        self.store: StoreProcess | None = None
        self.lsp: LspDriver | None = None
        self.details: dict[str, Any] = {}

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.lsp is not None:
            self.lsp.stop()
        if self.store is not None:
            self.store.stop()

    # --- presentation ----------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        started = time.monotonic()
        with self.console.status(f"[bold]{title}[/] …"):
            yield
        self.console.print(f"[green]✓[/] {title} [dim]({time.monotonic() - started:.1f} s)[/]")

    def bar(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )

    # --- the run ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        with self.step("model"):
            from crlhf_models import resolve_model

            self.model_ref = resolve_model(cfg.model)
        self.console.print(f"  model {self.model_ref.model_id} → {self.model_ref.path}")
        if self.model_ref.licence:
            self.console.print(f"  [dim]licence: {self.model_ref.licence}[/]")
        problems, pots = self.problems()
        with self.step("store (SQLite) with tokens and honeypots"):
            self.start_store(pots)
        with self.step("crlhf-lsp (model loading)"):
            self.start_lsp()
        rated = self.completions(problems)
        book = self.truth_book(rated, pots)
        crowd = self.crowd(book)
        aggregation, rewards = self.aggregation(rated, crowd)
        nightly = self.train()
        learning = self.learning(nightly, rated) if cfg.scenario == "conventions" else None
        hot_swap, example = self.hot_swap(nightly, rated)
        if learning is not None:  # the held-out prompt that shows the change
            example = self.details["example"] = self.details.pop("learning_example")
        summary = self.summary(rated, crowd, aggregation, rewards, nightly, hot_swap, example)
        summary["learning"] = learning
        return summary

    def learning(self, nightly: dict[str, Any], rated: list[Rated]) -> dict[str, Any]:
        """The gate's held-out metric before → after, other credit at the same budget,
        the guards and an example (:mod:`crlhf_cli.demo_learning`)."""
        from crlhf_trainer.gate import paired_interval

        from crlhf_cli import demo_learning as dl
        from crlhf_cli.learning import Collected

        run = Path(nightly["run"])
        evals = _read_json(run / "eval.json")
        base = evals["baseline"]["items"][dl.METRIC]
        cand = evals["candidate"]["items"][dl.METRIC]
        delta, low, high = paired_interval([c - b for c, b in zip(cand, base, strict=True)])
        model = str(self.model_ref.path)
        with self.step("majority vote and random credit, same labels, same training"):
            collected = [
                Collected(r.problem.task_id, r.completion.id, r.completion.text, r.truth)
                for r in rated
            ]
            suite = dl.conventions_suite(self.cfg.heldout)
            arms = dl.arm_results(
                self.work / "trainer", model, self.train_config, collected, suite, base
            )
        with self.step("guards: greedy completions of held-out prompts, before and after"):
            adapter = run / "adapter"
            guards = dl.generation_guards(
                model, adapter if adapter.is_dir() else None, self.cfg.guard_prompts
            )
        self.details["learning_example"] = guards.pop("example")
        self.details["arms"] = {"em2": {"delta": delta, "delta_low": low, "delta_high": high}}
        self.details["arms"] |= arms
        return {
            "scenario": "conventions",
            "metric": dl.METRIC,
            "higher_is_better": True,
            "n": len(base),
            "before": sum(base) / len(base),
            "after": sum(cand) / len(cand),
            "delta": delta,
            "delta_low": low,
            "delta_high": high,
            "majority_vote": arms["mv"],
            "random": arms["random"],
            **guards,
        }

    def problems(self) -> tuple[list[DemoProblem], list[Any]]:
        cfg = self.cfg
        if cfg.scenario == "conventions":
            problems, pots = conventions_problems(cfg.prompts, cfg.honeypots, cfg.seed)
            self._write_honeypots(pots)
            return problems, pots
        mbpp = mbpp_train(cfg.mbpp + cfg.honeypots, seed=cfg.seed)
        problems = mbpp[: cfg.mbpp] + humaneval_tail(cfg.humaneval)
        pots = honeypots(mbpp[cfg.mbpp :], seed=cfg.seed)
        self._write_honeypots(pots)
        return problems, pots

    def _write_honeypots(self, pots: list[Any]) -> None:
        with open(self.work / "honeypots.jsonl", "w", encoding="utf-8") as f:
            for h in pots:
                f.write(h.model_dump_json() + "\n")

    def start_store(self, pots: list[Any]) -> None:
        cfg = self.cfg
        env = {"CRLHF_REVIEW_REDUNDANCY": str(cfg.redundancy), "CRLHF_HONEYPOT_WARMUP": "6"}
        self.store = StoreProcess(self.work / "store", env=env)
        self.store.start()
        self.crowd_members = make_crowd(cfg.annotators, cfg.mix, cfg.seed)
        names = [("developer", "annotator"), ("trainer", "trainer")]
        names += [(a.name, "annotator") for a in self.crowd_members]
        self.tokens = self.store.create_tokens(names)  # type: ignore[arg-type]
        for a in self.crowd_members:
            a.token = self.tokens[a.name]
        self.store.import_honeypots(pots)

    def start_lsp(self) -> None:
        assert self.store is not None
        backend, model = self.lsp_backend()
        self.console.print(f"  crlhf-lsp backend: {backend}")
        settings = {
            "storeUrl": self.store.url,
            "token": self.tokens["developer"],
            "backend": backend,
            "model": model,
            "maxTokens": self.cfg.max_tokens,
            "temperature": 0.0,
            "outboxPath": str(self.work / "lsp" / "outbox.sqlite3"),
            "adapterPollSeconds": 1.0,
            "device": self.cfg.device,
        }
        (self.work / "lsp").mkdir(exist_ok=True)
        self.lsp = LspDriver(settings, self.work / "lsp" / "lsp.log")
        self.lsp.start()
        self.lsp.wait_ready()

    def lsp_backend(self) -> tuple[str, str]:
        """(backend, model setting) for crlhf-lsp: llama.cpp reads the GGUF itself."""
        gguf, backend = self.model_ref.gguf, self.cfg.backend
        if backend == "auto":
            llamacpp = importlib.util.find_spec("llama_cpp") is not None
            on_cpu = self.cfg.device == "cpu"
            backend = "llamacpp" if gguf is not None and llamacpp and on_cpu else "local"
        if backend == "llamacpp":
            if gguf is None:
                raise DemoError(
                    f"--backend llamacpp needs a GGUF model; {self.model_ref.model_id} has none"
                )
            return backend, str(gguf)
        return backend, str(self.model_ref.path)

    def completions(self, problems: list[DemoProblem]) -> list[Rated]:
        from crlhf_trainer.sandbox import Sandbox, SandboxUnavailable

        assert self.lsp is not None
        try:
            sandbox = Sandbox(timeout=10.0, cpu_seconds=10, memory_mb=1024)
        except SandboxUnavailable as exc:  # the demo runs generated code: jailed or not at all
            raise DemoError(str(exc)) from None
        rated: list[Rated] = []
        with self.bar() as bar:
            task = bar.add_task("completions via crlhf-lsp", total=len(problems))
            for problem in problems:
                completion = self.lsp.complete(problem.prompt)
                bar.advance(task)
                if completion is None:
                    continue
                self.lsp.accept(completion)
                if self.cfg.scenario == "conventions":
                    truth = conventions.line_truth(completion.text, problem.head)
                    passed = -1 not in truth  # keeps every convention
                else:
                    result = sandbox.run(problem.program(completion.text))
                    truth = line_truth(completion.text, problem.reference, result.passed)
                    passed = result.passed
                rated.append(Rated(problem, completion, passed, truth))
        self.lsp.wait_outbox_empty()
        if not rated:
            raise DemoError("crlhf-lsp gave no completion at all; see the lsp.log")
        passed = sum(r.passed for r in rated)
        what = "keep every convention" if self.cfg.scenario == "conventions" else "pass their tests"
        self.console.print(f"  {len(rated)} completions accepted, {passed} {what}")
        return rated

    def truth_book(self, rated: list[Rated], pots: list[Any]) -> TruthBook:
        book = TruthBook()
        for r in rated:
            book.by_id[r.completion.id] = r.truth
        for h in pots:
            key = (h.prompt, h.text)
            lines = h.text.split("\n")
            book.by_content[key] = [t if lines[i].strip() else None for i, t in enumerate(h.truth)]
            book.honeypot_keys.add(key)
        return book

    def crowd(self, book: TruthBook) -> list[SimAnnotator]:
        assert self.store is not None
        crowd = self.crowd_members
        expected = len(book.by_id) * self.cfg.redundancy + len(crowd) * self.cfg.max_honeypots
        with self.bar() as bar:
            task = bar.add_task("crowd rating (HTTP)", total=expected)
            self.crowd_stats = rate_all(
                self.store.url,
                crowd,
                book,
                max_honeypots=self.cfg.max_honeypots,
                seed=self.cfg.seed,
                on_task=lambda a, h: bar.advance(task),
            )
            bar.update(task, total=self.crowd_stats.tasks, completed=self.crowd_stats.tasks)
        s = self.crowd_stats
        self.console.print(
            f"  {len(crowd)} annotators rated {s.tasks} tasks ({s.honeypot_tasks} honeypots): "
            f"{s.ratings} line ratings"
        )
        return crowd

    def aggregation(
        self, rated: list[Rated], crowd: list[SimAnnotator]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """em2 and majority vote on the store's export, scored against the known truth."""
        from crlhf_contract.client import StoreClient
        from crlhf_contract.schemas import completion_lines
        from crlhf_trainer.aggregation.labels import LabelSet, item_key
        from crlhf_trainer.rewards import aggregate_labels

        from crlhf_cli.learning_stats import line_scores

        assert self.store is not None
        counts = {r.completion.id: len(completion_lines(r.completion.text)) for r in rated}
        with self.step("aggregation (em2 vs majority vote)"):
            with StoreClient(self.store.url, self.tokens["trainer"]) as client:
                pages = [p.model_dump(mode="json") for p in client.iter_label_pages()]
            labels = LabelSet.from_export(pages)
            em2, rewards = aggregate_labels(labels, "em2", counts)
            mv, _ = aggregate_labels(labels, "mv", counts)
        truth = {
            item_key(r.completion.id, line): t
            for r in rated
            for line, t in enumerate(r.truth)
            if t is not None
        }
        index = {item: i for i, item in enumerate(labels.items)}
        scored = [(index[item], t) for item, t in truth.items() if item in index]

        def scores(p: Any) -> dict[str, Any] | None:
            if not scored:
                return None
            return asdict(line_scores([p[i] for i, _ in scored], [t for _, t in scored]))

        def accuracy(p: Any) -> float | None:
            s = scores(p)
            return None if s is None else s["accuracy"]

        kinds = {a.name: a for a in crowd}
        estimated = {a.annotator: a for a in em2.annotators}
        annotators = [
            {
                "name": a.name,
                "kind": a.kind,
                "simulated": a.observed_accuracy,
                "estimated": estimated[a.name].reliability,
                "low": estimated[a.name].low,
                "high": estimated[a.name].high,
                "flag": estimated[a.name].flag,
                "labels": a.labels,
            }
            for a in crowd
            if a.name in estimated
        ]
        errors = [
            abs(a["estimated"] - a["simulated"]) for a in annotators if a["simulated"] is not None
        ]
        flagged = sorted(a["name"] for a in annotators if a["flag"] != "ok")
        bad_kinds = {"spammer", "always_up", "adversary"}
        summary = {
            "method": "em2",
            "lines": len(scored),
            "labels": labels.n_labels,
            "accuracy": accuracy(em2.p_correct),
            "majority_vote_accuracy": accuracy(mv.p_correct),
            # beside each accuracy: the constant baseline, balanced accuracy, AUC, Brier
            "scores": {"em2": scores(em2.p_correct), "majority_vote": scores(mv.p_correct)},
            "flagged_annotators": flagged,
            "flagged_unreliable": sum(kinds[n].kind in bad_kinds for n in flagged),
            "unreliable_annotators": sum(a.kind in bad_kinds for a in crowd),
            "reliability_mae": sum(errors) / len(errors) if errors else None,
        }
        by_id = {r.completion.id: r for r in rated}
        reward_rows = [
            {
                "completion_id": cid,
                "reward": rw.mean,
                "low": rw.low,
                "high": rw.high,
                "passed": by_id[cid].passed,
            }
            for cid, rw in rewards.items()
            if cid in by_id
        ]
        self.details["annotators"] = annotators
        self.details["rewards"] = reward_rows
        acc, mva = summary["accuracy"], summary["majority_vote_accuracy"]
        self.console.print(
            f"  line accuracy: em2 {_pct(acc)} vs majority vote {_pct(mva)}; "
            f"flagged {len(flagged)} annotators"
        )
        return summary, {"rows": reward_rows}

    def train(self) -> dict[str, Any]:
        from crlhf_trainer.evaluate import EvalConfig
        from crlhf_trainer.gate import GateConfig
        from crlhf_trainer.nightly import NightlyConfig, run_nightly
        from crlhf_trainer.train import TrainConfig
        from transformers.utils import logging as hf_logging

        from crlhf_cli.demo_learning import conventions_suite

        # the demo draws its own bars: transformers' per-load bars and deprecation notes
        # would interleave with them
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        warnings.filterwarnings("ignore", category=FutureWarning)
        assert self.store is not None
        cfg = self.cfg
        self.train_started = time.monotonic()
        self.train_config = TrainConfig(
            method=cfg.method,
            max_steps=cfg.train_steps,
            batch_size=cfg.batch_size,
            grad_accum=cfg.grad_accum,
            lr=cfg.lr,
            kl_stop=cfg.kl_stop,
            warmup_steps=max(1, cfg.train_steps // 8),
            seed=cfg.seed,
            device=cfg.device,
        )
        conventions_scenario = cfg.scenario == "conventions"
        benchmarks = ("humaneval", "mbpp") if cfg.eval_limit else ()
        suites = {"conventions": conventions_suite(cfg.heldout)} if conventions_scenario else {}
        ncfg = NightlyConfig(
            store_url=self.store.url,
            token=self.tokens["trainer"],
            model=str(self.model_ref.path),
            work_dir=self.work / "trainer",
            method=cfg.method,
            train=self.train_config,
            eval=EvalConfig(
                benchmarks=benchmarks,
                limit=cfg.eval_limit or None,
                max_new_tokens=cfg.eval_max_tokens,
                seed=cfg.seed,
                suites=suites,
            ),
            # conventions: the held-out set is whole modules never rated, so every rated
            # completion can train; mbpp keeps a tenth of the rated completions out
            heldout_fraction=0.0 if conventions_scenario else 0.1,
            gate=GateConfig(min_items=cfg.min_items),
        )
        with self.bar() as bar:
            tasks: dict[str, Any] = {}
            labels = {
                "pull": "trainer: pull",
                "train": "trainer: LoRA steps",
                "eval": "trainer: held-out before/after",
            }

            def progress(stage: str, advance: int, total: int | None) -> None:
                if stage not in tasks:
                    for task in bar.tasks:  # a new stage: the earlier ones are done
                        bar.update(task.id, total=task.completed)
                        bar.stop_task(task.id)
                    tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
                bar.update(tasks[stage], advance=advance, total=total)

            nightly = run_nightly(ncfg, progress)
        run = Path(nightly["run"])
        info = _read_json(run / "train.json")
        self.details["history"] = info.get("history") or info.get("report", {}).get("history") or []
        return nightly

    def hot_swap(
        self, nightly: dict[str, Any], rated: list[Rated]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.lsp is not None
        publish = nightly.get("publish", {})
        example = rated[0]
        out: dict[str, Any] = {"swapped": False, "ms": None, "seconds_after_publish": None}
        if publish.get("status") == "published":
            with self.step("hot swap in crlhf-lsp"):
                # run_nightly publishes at its very end: whatever crlhf-lsp announces after
                # the trainer started is this run's adapter
                published_at = self.train_started
                got = self.lsp.wait_adapter(published_at, timeout=60)
                if got is None:  # a slow poll: ask for the check an editor's command runs
                    asked = time.monotonic()
                    self.lsp.command("crlhf.checkAdapter")
                    got = self.lsp.wait_adapter(asked, timeout=60)
                if got is not None:
                    _, wall, params = got
                    out = {
                        "swapped": params.get("version") == publish.get("version"),
                        "ms": round(float(params.get("seconds", 0.0)) * 1000, 1),
                        "seconds_after_publish": self.seconds_since_publish(wall),
                        "version": params.get("version"),
                    }
            after = self.lsp.complete(example.problem.prompt)
            after_text = after.text if after else None
        else:
            after_text = None
        ex = {
            "task_id": example.problem.task_id,
            "prompt": example.problem.prompt,
            "before": example.completion.text,
            "after": after_text,
        }
        self.details["example"] = ex
        return out, ex

    def seconds_since_publish(self, wall: float) -> float | None:
        """How long after the store published the adapter crlhf-lsp announced the swap."""
        from crlhf_contract.client import StoreClient

        assert self.store is not None
        with StoreClient(self.store.url, self.tokens["trainer"]) as client:
            latest = client.latest_adapter()
        if latest is None or latest.published_at is None:
            return None
        published = latest.published_at
        if published.tzinfo is None:  # SQLite keeps naive UTC
            published = published.replace(tzinfo=UTC)
        return round(wall - published.timestamp(), 2)

    def summary(self, rated, crowd, aggregation, rewards, nightly, hot_swap, example):  # type: ignore[no-untyped-def]
        evals = nightly.get("eval", {})
        publish = nightly.get("publish", {})
        train = nightly.get("train", {})
        rows = rewards["rows"]
        kinds = Counter(a.kind for a in crowd)
        return {
            "model": self.model_ref.model_id,
            "device": self.cfg.device,
            "mode": self.cfg.mode,
            "completions": {
                "n": len(rated),
                "passed": sum(r.passed for r in rated),
                "mean_seconds": _mean([r.completion.seconds for r in rated]),
                "lines": sum(t is not None for r in rated for t in r.truth),
            },
            "crowd": {"annotators": len(crowd), "kinds": dict(kinds)} | asdict(self.crowd_stats),
            "aggregation": aggregation,
            "rewards": {
                "mean": _mean([r["reward"] for r in rows]),
                "n_completions": len(rows),
                "mean_passed": _mean([r["reward"] for r in rows if r["passed"]]),
                "mean_failed": _mean([r["reward"] for r in rows if not r["passed"]]),
            },
            "train": {
                "method": train.get("method"),
                "examples": train.get("examples"),
                "steps": train.get("report", {}).get("steps"),
                "seconds": train.get("report", {}).get("seconds"),
                "final": train.get("report", {}).get("final"),
            },
            "eval": {
                "before": _with_overall(evals.get("baseline", {})),
                "after": _with_overall(evals.get("candidate", {})),
            },
            "adapter": {
                "version": publish.get("version"),
                "sha256": publish.get("sha256"),
                "published": publish.get("status") == "published",
                "status": publish.get("status"),
                "decision": publish.get("decision"),
                "reason": publish.get("decision"),
            },
            "hot_swap": hot_swap,
            "example": {k: example[k] for k in ("task_id", "before", "after")},
            "work_dir": str(self.work),
        }

    def print_summary(self, summary: dict[str, Any]) -> None:
        from crlhf_cli.report import write_report

        rows = summary_rows(summary)
        table = Table(title="crlhf demo: summary", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for k, v in rows:
            table.add_row(k, v)
        path = write_report(self.work / "report.html", summary, self.details, rows)
        self.console.print(table)
        self.console.print(f"report: {path}")


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    agg, ev, ad, hs = s["aggregation"], s["eval"], s["adapter"], s["hot_swap"]
    c, cr, rw = s["completions"], s["crowd"], s["rewards"]
    passes = sorted(k for k in ev["before"].keys() | ev["after"].keys() if "pass@" in k)
    return [
        ("model", f"{s['model']} ({s['device']}, {s['mode']})"),
        (
            "completions (crlhf-lsp)",
            f"{c['n']} accepted, {c['passed']} pass their tests, "
            f"{_num(c['mean_seconds'], 's')} each",
        ),
        (
            "crowd",
            f"{cr['annotators']} annotators, {cr['ratings']} line ratings on "
            f"{cr['tasks']} tasks ({cr['honeypot_tasks']} honeypots)",
        ),
        (
            "line accuracy",
            f"em2 {_pct(agg['accuracy'])} · majority vote "
            f"{_pct(agg['majority_vote_accuracy'])} ({agg['lines']} lines)",
        ),
        *_score_rows(agg.get("scores")),
        (
            "flagged annotators",
            f"{len(agg['flagged_annotators'])} "
            f"({agg['flagged_unreliable']} of {agg['unreliable_annotators']} "
            "unreliable ones)",
        ),
        ("reliability error", _num(agg["reliability_mae"])),
        (
            "rewards",
            f"mean {_num(rw['mean'])} over {rw['n_completions']} completions "
            f"(passing {_num(rw['mean_passed'])}, failing {_num(rw['mean_failed'])})",
        ),
        (
            "training",
            f"{s['train']['steps']} steps on {s['train']['examples']} completions "
            f"({_num(s['train']['seconds'], 's')})",
        ),
        *[(k, f"{_num(ev['before'].get(k))} → {_num(ev['after'].get(k))}") for k in passes],
        *_learning_rows(s.get("learning")),
        ("adapter", f"{ad['version']} {ad['status']} ({ad['decision']})"),
        ("hot swap", f"{'yes' if hs['swapped'] else 'no'}, {_num(hs['ms'], ' ms')}"),
        ("wall time", _num(s.get("wall_s"), " s")),
    ]


def _score_rows(scores: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Accuracy means little alone: a constant answer can score 97% on skewed lines."""
    rows = []
    for name, sc in (scores or {}).items():
        if sc:
            rows.append(
                (
                    f"  {name.replace('_', ' ')}",
                    f"constant answer {_pct(sc['constant'])} · balanced {_pct(sc['balanced'])}"
                    f" · AUC {_num(sc['auc'])} · Brier {_num(sc['brier'])}",
                )
            )
    return rows


def _learning_rows(learning: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not learning:
        return []

    def delta(d: dict[str, Any]) -> str:
        return f"Δ {d['delta']:+.3f} [{d['delta_low']:+.3f}, {d['delta_high']:+.3f}]"

    def moved(key: str) -> str:
        return f"{learning[key]['before']:.0%} → {learning[key]['after']:.0%}"

    return [
        (
            "held-out conventions (nats/token)",
            f"{learning['before']:+.3f} → {learning['after']:+.3f}, {delta(learning)} "
            f"on {learning['n']} functions never rated (90% paired interval)",
        ),
        (
            "same labels, other credit",
            f"majority vote {delta(learning['majority_vote'])} · "
            f"random credit {delta(learning['random'])}",
        ),
        (
            "guards (held-out prompts)",
            f"rule-breaking lines {moved('violation_rate')} · parses {moved('parse_rate')} · "
            f"repeated lines {moved('repetition')}",
        ),
    ]


def _with_overall(metrics: dict[str, Any]) -> dict[str, Any]:
    """Add ``pass@k`` over all benchmarks (weighted by their problem counts)."""
    out = dict(metrics)
    ks = {k.split("/", 1)[1] for k in metrics if "/pass@" in k}
    for k in sorted(ks):
        parts = [
            (metrics[f"{b}/{k}"], metrics.get(f"{b}/problems", 1))
            for b in ("humaneval", "mbpp")
            if f"{b}/{k}" in metrics
        ]
        total = sum(n for _, n in parts)
        out[k] = sum(v * n for v, n in parts) / total if total else 0.0
    return out


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _num(v: Any, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"
    return f"{v}{unit}"
