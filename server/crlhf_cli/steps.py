"""The demo's steps, in order (see :mod:`crlhf_cli.demo`), with progress bars."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crlhf_cli import conventions
from crlhf_cli.crowd import SimAnnotator, TruthBook, make_crowd, rate_all
from crlhf_cli.demo import DemoConfig
from crlhf_cli.demo_summary import build_summary, pct, summary_rows
from crlhf_cli.execution import judge
from crlhf_cli.lsp import Completion, LspDriver
from crlhf_cli.problems import (
    DemoProblem,
    conventions_problems,
    honeypots,
    humaneval_tail,
    mbpp_train,
)
from crlhf_cli.services import DemoError, StoreProcess

__all__ = ["Demo", "Rated"]


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
        self.guard_texts: list[list[str]] = []  # the gate's guard completions: before, after

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
        trained = "run" in nightly  # else the credit was flat: nothing was trained
        learning = (
            self.learning(nightly, rated) if cfg.scenario == "conventions" and trained else None
        )
        hot_swap, example = self.hot_swap(nightly, rated)
        if learning is not None:  # the held-out prompt that shows the change
            example = self.details["example"] = self.details.pop("learning_example")
        summary = build_summary(
            self.cfg,
            self.model_ref.model_id,
            self.work,
            self.crowd_stats,
            rated=rated,
            crowd=crowd,
            aggregation=aggregation,
            rewards=rewards,
            nightly=nightly,
            hot_swap=hot_swap,
            example=example,
        )
        summary["learning"] = learning
        return summary

    def learning(self, nightly: dict[str, Any], rated: list[Rated]) -> dict[str, Any]:
        """The gate's held-out metric before → after, other credit at the same budget,
        the guards and an example (:mod:`crlhf_cli.demo_learning`)."""
        from crlhf_trainer.gate import paired_interval

        from crlhf_cli import demo_learning as dl
        from crlhf_cli.learning_stores import Collected

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
                model,
                adapter if adapter.is_dir() else None,
                self.cfg.guard_prompts,
                generated=self.guard_texts,
                gguf=self.served_gguf(),
            )
        self.details["learning_example"] = guards.pop("example")
        # every guard completion before and after, to read what a refused adapter wrote
        with open(self.work / "guards.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in guards.pop("completions"))
        self.details["arms"] = {"em2": {"delta": delta, "delta_low": low, "delta_high": high}}
        self.details["arms"] |= arms
        return dl.learning_summary(base, cand, (delta, low, high), arms, guards)

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
            "maxTokens": self.cfg.completion_tokens(),
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

    def served_gguf(self) -> Path | None:
        """The GGUF crlhf-lsp serves (llamacpp backend): the guards judge its completions."""
        backend, model = self.lsp_backend()
        return Path(model) if backend == "llamacpp" else None

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
                    judged = judge(problem, completion.text, sandbox)
                    truth, passed = judged.truth, judged.passed
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
        from crlhf_cli import demo_aggregation as da

        assert self.store is not None
        with self.step("aggregation (em2 vs majority vote)"):
            labels, em2, mv, rewards = da.aggregate(self.store.url, self.tokens["trainer"], rated)
        summary, annotators = da.summarise(labels, rated, crowd, em2, mv)
        reward_rows = da.reward_rows(rated, rewards)
        self.details["annotators"] = annotators
        self.details["rewards"] = reward_rows
        acc, mva = summary["accuracy"], summary["majority_vote_accuracy"]
        self.console.print(
            f"  line accuracy: em2 {pct(acc)} vs majority vote {pct(mva)}; "
            f"flagged {len(summary['flagged_annotators'])} annotators"
        )
        return summary, {"rows": reward_rows}

    def train(self) -> dict[str, Any]:
        from crlhf_trainer.errors import NoTrainingData
        from crlhf_trainer.nightly import run_nightly

        from crlhf_cli import demo_training as dt

        dt.quiet_transformers()
        assert self.store is not None
        self.train_started = time.monotonic()
        self.train_config = dt.train_config(self.cfg)
        ncfg = dt.nightly_config(
            self.cfg,
            store_url=self.store.url,
            token=self.tokens["trainer"],
            model=str(self.model_ref.path),
            work_dir=self.work / "trainer",
            train=self.train_config,
            guard_texts=self.guard_texts,
            gguf=self.served_gguf(),
        )
        try:
            with self.bar() as bar:
                nightly = run_nightly(ncfg, dt.stage_bars(bar))
        except NoTrainingData as exc:
            # the crowd's credit is flat (every line judged alike): no adapter is trained,
            # and the summary says why rather than the demo failing
            self.console.print(f"  [yellow]no adapter trained: nothing to learn ({exc})[/]")
            self.details["history"] = []
            return {"publish": {"status": "none", "decision": f"nothing to learn: {exc}"}}
        run = Path(nightly["run"])
        info = _read_json(run / "train.json")
        self.details["history"] = info.get("history") or info.get("report", {}).get("history") or []
        return nightly

    def hot_swap(
        self, nightly: dict[str, Any], rated: list[Rated]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        from crlhf_cli.demo_hot_swap import NOT_SWAPPED, wait_for_swap

        assert self.lsp is not None
        publish = nightly.get("publish", {})
        example = rated[0]
        out: dict[str, Any] = dict(NOT_SWAPPED)
        if publish.get("status") == "published":
            assert self.store is not None
            with self.step("hot swap in crlhf-lsp"):
                # run_nightly publishes at its very end: whatever crlhf-lsp announces after
                # the trainer started is this run's adapter
                out = wait_for_swap(
                    self.lsp,
                    publish,
                    since=self.train_started,
                    store_url=self.store.url,
                    token=self.tokens["trainer"],
                )
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


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
