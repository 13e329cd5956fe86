"""Unit tests of crlhf-lsp's model-free modules: prompt, postprocess, tracking, settings,
outbox (against an in-memory HTTP transport that fails on demand), the openai backend's
stream parsing, and the backend table."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import crlhf_lsp.server
import httpx
import pytest
from crlhf_contract.client import StoreClient
from crlhf_contract.schemas import CompletionIn, EventIn, RatingIn
from crlhf_lsp.backends import BACKENDS, GenerationRequest, MemoryBackend
from crlhf_lsp.backends.openai import OpenAIBackend
from crlhf_lsp.errors import OutboxFull, SettingsError
from crlhf_lsp.feedback import parse_rate_args
from crlhf_lsp.outbox import Outbox
from crlhf_lsp.postprocess import Cutter
from crlhf_lsp.prompt import CHUNK_LINES, build_prompt, detect_fim_tokens
from crlhf_lsp.settings import Settings
from crlhf_lsp.tracking import Change, Tracker, to_index


def words(text: str) -> int:
    return len(text.split())


# --- prompt --------------------------------------------------------------------------------


def test_fim_tokens_are_detected_per_family() -> None:
    assert detect_fim_tokens({"<|fim_prefix|>": 1, "<|fim_suffix|>": 2, "<|fim_middle|>": 3})
    assert detect_fim_tokens({"▁<PRE>": 1, "▁<SUF>": 2, "▁<MID>": 3}) == ("<PRE>", "<SUF>", "<MID>")
    assert detect_fim_tokens({"a": 1}) is None


def test_prompt_uses_fim_only_with_code_after_the_cursor() -> None:
    fim = ("<P>", "<S>", "<M>")
    plain = build_prompt("x = ", "\n\n", count_tokens=words, fim_tokens=fim)
    assert plain.text == "x = " and not plain.fim
    p = build_prompt("x = f(", ")\ny = 2\n", count_tokens=words, fim_tokens=fim)
    assert p.text == "<P>x = f(<S>)\ny = 2\n<M>" and p.fim


def test_prefix_is_cut_in_whole_chunks_so_consecutive_prompts_share_it() -> None:
    lines = [f"line {i} a b c" for i in range(1000)]
    a = build_prompt("\n".join(lines), "", count_tokens=words, budget=400).text
    b = build_prompt("\n".join(lines) + " d", "", count_tokens=words, budget=400).text
    assert words(a) <= 400 and b.startswith(a)
    first = int(a.split()[1])
    assert first % CHUNK_LINES == 0
    huge = build_prompt("x" * 10_000_000, "", count_tokens=len, budget=100)  # one huge line
    assert len(huge.text) <= 200


# --- postprocess ---------------------------------------------------------------------------


def test_mid_line_completion_is_one_line_without_the_suffix_repeated() -> None:
    cut = Cutter("print(mean(", ")")
    assert cut.single_line
    assert cut.is_complete("values))\nmore")
    assert cut.finish("values))\nmore", ")\n") == "values)"


def test_block_ends_when_its_indentation_closes() -> None:
    cut = Cutter("    ", "")
    text = "total = sum(values)\n    return total\n\ndef other():\n    pass"
    assert cut.finish(text, "") == "total = sum(values)\n    return total"
    assert not cut.is_complete("total = sum(values)\n    ret")
    top = Cutter("", "")
    code = "def f(x):\n    if x:\n        return 1\n    else:\n        return 2\ndef g():"
    assert (
        top.finish(code, "")
        == "def f(x):\n    if x:\n        return 1\n    else:\n        return 2"
    )


def test_repeats_and_empty_results_are_dropped() -> None:
    cut = Cutter("", "")
    assert cut.finish("a = 1\nb()\nb()\nb()", "") == "a = 1\nb()"
    assert cut.finish("   \n  ", "") == ""
    assert Cutter("    ", "").finish("x = 1\n    y = 2", "\n    y = 2\n") == "x = 1"


# --- tracking ------------------------------------------------------------------------------


def track(lines: list[str]) -> Tracker:
    tracker = Tracker()
    tracker.track("u", "c", 10, lines)
    return tracker


def lines_of(tracker: Tracker) -> list[tuple[int, int]]:
    return [(t.index, t.line) for t in tracker.at("u", 0, 10_000)]


def test_lines_move_with_edits_above_and_stay_with_edits_below() -> None:
    tracker = track(["def f():", "    return 1"])
    tracker.apply("u", Change("a\nb\n", (0, 0), (0, 0)), [], "utf-16")  # two lines above
    assert lines_of(tracker) == [(0, 12), (1, 13)]
    tracker.apply("u", Change("", (2, 0), (4, 0)), [], "utf-16")  # two lines deleted above
    assert lines_of(tracker) == [(0, 10), (1, 11)]
    tracker.apply("u", Change("x\n", (20, 0), (20, 0)), [], "utf-16")  # below: nothing moves
    assert lines_of(tracker) == [(0, 10), (1, 11)]
    tracker.apply("u", Change("\n", (10, 0), (10, 0)), [], "utf-16")  # Enter at column 0
    assert lines_of(tracker) == [(0, 11), (1, 12)]


def test_small_edits_keep_a_line_and_rewrites_or_deletions_drop_it() -> None:
    tracker = track(["def f():", "    return total_value", "    pass"])
    tracker.apply("u", Change("s", (11, 22), (11, 22)), [], "utf-16")  # typed at its end
    assert (1, 11) in lines_of(tracker)
    tracker.apply("u", Change("zzzzzzzzzzzzzzzz", (11, 4), (11, 23)), [], "utf-16")
    assert [i for i, _ in lines_of(tracker)] == [0, 2]
    tracker.apply("u", Change("", (10, 0), (11, 0)), [], "utf-16")  # line 0 deleted
    assert lines_of(tracker) == [(2, 11)]


def test_whole_document_changes_rematch_by_text_and_utf16_offsets() -> None:
    tracker = track(["alpha = 1", "beta = 2"])
    tracker.apply("u", Change("x\nalpha = 1\nbeta = 2"), ["x", "alpha = 1", "beta = 2"], "utf-16")
    assert lines_of(tracker) == [(0, 1), (1, 2)]
    assert to_index("a🙂b", 3) == 2 and to_index("a🙂b", 99) == 3
    assert to_index("é", 2, "utf-8") == 1


def test_rate_arguments() -> None:
    cid = str(uuid.uuid4())
    assert parse_rate_args((cid, 0, 1, cid, 2, -1)) == [
        (uuid.UUID(cid), 0, 1),
        (uuid.UUID(cid), 2, -1),
    ]
    assert parse_rate_args(([cid, 1, -1],)) == [(uuid.UUID(cid), 1, -1)]
    for bad in ((cid, 0), (cid, -1, 1), (cid, 0, 2), ("x", 0, 1)):
        with pytest.raises(Exception, match="crlhf.rate|completion id"):
            parse_rate_args(bad)


def test_server_module_keeps_its_public_names() -> None:
    """The CLI and the features import these from crlhf_lsp.server; nothing else lives there."""
    assert sorted(crlhf_lsp.server.__all__) == ["CrlhfServer", "create_server"]


# --- settings ------------------------------------------------------------------------------


def test_settings_merge_coerce_and_name_bad_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRLHF_STORE_URL", "https://store")
    monkeypatch.setenv("CRLHF_MODEL", "tiny")
    s = Settings()
    assert (s.storeUrl, s.model, s.backend, s.enabled) == ("https://store", "tiny", "auto", True)
    t = s.merged({"crlhf": {"maxTokens": "12", "enabled": "false", "unknown": 1}})
    assert (t.maxTokens, t.enabled) == (12, False)
    with pytest.raises(SettingsError, match="maxTokens"):
        s.merged({"maxTokens": "many"})
    with pytest.raises(SettingsError, match="backend"):
        s.merged({"backend": "magic"})


def test_backend_table_and_memory_backend() -> None:
    assert set(BACKENDS) >= {"local", "openai", "llamacpp"}
    backend = MemoryBackend(["a", "b"])
    assert backend.generate(GenerationRequest("p"), threading.Event()).text == "a"
    assert backend.generate(GenerationRequest("p"), threading.Event()).text == "b"


# --- openai backend ------------------------------------------------------------------------


def test_openai_backend_streams_tokens_and_logprobs() -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1, 2]})
        seen.update(json.loads(request.content))
        chunks = [
            {
                "choices": [
                    {"text": "x", "logprobs": {"tokens": ["token_id:5"], "token_logprobs": [-0.5]}}
                ]
            },
            {
                "choices": [
                    {
                        "text": " = 1",
                        "logprobs": {"tokens": ["token_id:7"], "token_logprobs": [-1.0]},
                    }
                ]
            },
        ]
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=body)

    backend = OpenAIBackend("http://vllm", "base", transport=httpx.MockTransport(handler))
    backend.load_adapter(Path("."), "v3")
    out = backend.generate(GenerationRequest("p", max_tokens=4, stop=["\n"]), threading.Event())
    assert (out.text, out.token_ids, out.token_logprobs) == ("x = 1", [5, 7], [-0.5, -1.0])
    assert out.prompt_token_ids == [1, 2]  # from /tokenize: the server sent none inline
    assert seen["model"] == "v3" and seen["stop"] == ["\n"]


def test_openai_backend_drops_logprobs_that_do_not_match_the_tokens() -> None:
    """A null log-prob left out made the lists differ, and the store refuses such a row."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1]})
        lp = {"tokens": ["token_id:5", "token_id:7"], "token_logprobs": [None, -1.0]}
        chunk = {"choices": [{"text": "x =", "logprobs": lp}]}
        return httpx.Response(200, text=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n")

    backend = OpenAIBackend("http://vllm", "base", transport=httpx.MockTransport(handler))
    out = backend.generate(GenerationRequest("p", max_tokens=4), threading.Event())
    assert (out.token_ids, out.token_logprobs) == ([5, 7], None)
    row = CompletionIn(
        id=uuid.uuid4(), prompt="p", text=out.text, model="m", token_ids=out.token_ids
    )
    assert row.token_logprobs is None


# --- outbox --------------------------------------------------------------------------------


class FlakyStore:
    """An in-memory store behind httpx.MockTransport: ``mode`` ok / down / garbage / reject."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.rows: dict[str, set[str]] = {"completions": set(), "events": set(), "ratings": set()}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.mode == "down":
            raise httpx.ConnectError("refused")
        if self.mode == "garbage":
            return httpx.Response(500, text="<html>oops")
        kind = request.url.path.rsplit("/", 1)[-1]
        if kind == "me":
            return httpx.Response(200, json={"annotator": "a", "scopes": ["annotator"]})
        body = json.loads(request.content)[kind]
        if self.mode == "reject" and any(r.get("line") == 13 for r in body):
            return httpx.Response(422, json={"detail": "line 13 is unlucky"})
        keys = {r.get("event_id") or r.get("id") for r in body}
        new = keys - self.rows[kind]
        self.rows[kind] |= keys
        return httpx.Response(200, json={"stored": len(new), "duplicates": len(keys) - len(new)})


def rating(line: int = 0) -> RatingIn:
    return RatingIn(event_id=uuid.uuid4(), completion_id=uuid.uuid4(), line=line, label=1)


def test_outbox_keeps_rows_through_outages_and_restarts(tmp_path: Path) -> None:
    store = FlakyStore()
    client = StoreClient("http://store", "t", transport=httpx.MockTransport(store))
    box = Outbox(tmp_path / "o.sqlite3")
    box.set_client(client)
    completion = CompletionIn(id=uuid.uuid4(), prompt="p", text="t", model="m")
    box.put_completion(completion)
    box.put_completion(completion)  # the same id twice is one row
    box.put_event(EventIn(event_id=uuid.uuid4(), completion_id=completion.id, kind="accepted"))
    box.put_rating(rating())
    assert box.pending() == 3
    for mode in ("down", "garbage"):
        store.mode = mode
        with pytest.raises(Exception, match="store|HTTP|refused"):
            box.flush()
        assert box.pending() == 3
    box._db.close()
    box = Outbox(tmp_path / "o.sqlite3")  # a restart: the rows are still there
    box.set_client(client)
    store.mode = "ok"
    assert box.flush() == 3 and box.pending() == 0
    assert {k: len(v) for k, v in store.rows.items()} == {
        "completions": 1,
        "events": 1,
        "ratings": 1,
    }


def test_outbox_isolates_rejected_rows_and_is_bounded(tmp_path: Path) -> None:
    store = FlakyStore()
    store.mode = "reject"
    warnings: list[str] = []
    box = Outbox(tmp_path / "o.sqlite3", max_rows=6, warn=warnings.append)
    box.set_client(StoreClient("http://store", "t", transport=httpx.MockTransport(store)))
    for line in (1, 13, 2, 3):
        box.put_rating(rating(line))
    assert box.flush() == 3
    [aside] = box.set_aside()
    assert box.pending() == 0 and "unlucky" in aside.reason
    box.set_client(None)
    for _ in range(6):
        box.put_event(EventIn(event_id=uuid.uuid4(), completion_id=uuid.uuid4(), kind="shown"))
    with pytest.raises(OutboxFull, match="outbox full"):
        box.put_event(EventIn(event_id=uuid.uuid4(), completion_id=uuid.uuid4(), kind="shown"))
    box.put_rating(rating())  # ratings still fit, up to twice the bound
    assert any("outbox full" in w for w in warnings)


def test_outbox_thread_backs_off_and_recovers(tmp_path: Path) -> None:
    store = FlakyStore()
    store.mode = "down"
    changes = threading.Event()
    box = Outbox(tmp_path / "o.sqlite3", base_delay=0.05, max_delay=0.2, on_change=changes.set)
    box.set_client(StoreClient("http://store", "t", transport=httpx.MockTransport(store)))
    box.start()
    try:
        box.put_rating(rating())
        for _ in range(200):
            if box.reachable is False:
                break
            time.sleep(0.05)
        assert box.reachable is False and box.pending() == 1
        store.mode = "ok"
        for _ in range(200):
            if box.pending() == 0:
                break
            time.sleep(0.05)
        assert box.pending() == 0
        for _ in range(200):
            if box.reachable:
                break
            time.sleep(0.05)
        assert box.reachable is True
    finally:
        box.stop()


def test_the_heap_is_frozen_once_a_model_is_loaded(tmp_path: Path) -> None:
    """A full collection walked the whole loaded model (~200 ms with the tiny one): the
    server takes what is alive after loading out of the collector's sight."""
    import gc

    from crlhf_lsp.server import CrlhfServer

    server = CrlhfServer()
    gc.unfreeze()
    try:
        server._load_backend(Settings(backend="openai", openaiUrl="http://127.0.0.1:9"))
        assert server.backend_future is not None
        server.backend_future.result(timeout=60)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        server.shutdown_all()
