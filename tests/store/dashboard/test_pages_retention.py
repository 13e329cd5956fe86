"""The retention page (``/dashboard/retention``) and ``/v1/stats/retention`` over real HTTP:
a store process, completions of two adapter versions accepted by a developer whose editor
posts its retention checks, the page's table and charts, and who may see them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from conftest import LiveStore, start_live_store
from crlhf_contract.retention import RetainedLine
from crlhf_contract.schemas import CompletionIn, EventIn
from dashboard.crowd import login

PROBE = "<script>v3</script>"
"""An adapter version is whatever the editor sent: it must render as text."""


def _completion(text: str, version: str | None) -> CompletionIn:
    return CompletionIn(
        id=uuid.uuid4(), prompt="def f():\n", text=text, model="m", adapter_version=version
    )


def _event(c: CompletionIn, kind: str, **kw) -> EventIn:  # type: ignore[no-untyped-def]
    return EventIn(event_id=uuid.uuid4(), completion_id=c.id, kind=kind, **kw)


def _fill(store: LiveStore) -> None:
    """v1: 9 + 10 characters, the second line edited by 3 → 16 retained; v2: 6 characters,
    deleted; PROBE: accepted, not checked yet; one completion shown only."""
    v1 = _completion("    a = 1 \n    b = 22\n", "v1")
    v2 = _completion("return", "v2")
    probe = _completion("x = 1", PROBE)
    shown = _completion("y = 2", "v1")
    kept = RetainedLine(line=0, state="unchanged")
    events = [
        _event(v1, "accepted"),
        _event(v1, "retained", after_s=30.0, lines=[kept, RetainedLine(line=1, state="unchanged")]),
        _event(
            v1,
            "retained",
            after_s=300.0,
            lines=[kept, RetainedLine(line=1, state="edited", distance=3, correction="    b = 3")],
        ),
        _event(v2, "partial", accepted_chars=6),
        _event(v2, "retained", after_s=300.0, lines=[RetainedLine(line=0, state="deleted")]),
        _event(probe, "accepted"),
        _event(shown, "shown"),
    ]
    with store.client() as alice:
        alice.post_completions([v1, v2, probe, shown])
        alice.post_events(events)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStore]:
    live = start_live_store(Path(tmp_path_factory.mktemp("retention")) / "store")
    try:
        _fill(live)
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def admin(store: LiveStore) -> Iterator[httpx.Client]:
    with closing(login(store.url, store.admin_token)) as http:
        yield http


def _rows(html: str) -> dict[str, list[str]]:
    table = re.search(r'<table id="retention">.*?</table>', html, flags=re.S).group(0)  # type: ignore[union-attr]
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S) for r in rows]
    return {c[0]: c[1:] for c in cells if c}


def test_the_page_shows_characters_per_adapter_version_with_its_charts(admin: httpx.Client):
    reply = admin.get("/dashboard/retention")
    assert reply.status_code == 200, reply.text
    assert "default-src 'none'" in reply.headers["content-security-policy"]
    html = reply.text
    rows = _rows(html)
    # completions, accepted, checked, retained, share (trailing blanks and breaks aside)
    assert rows["v1"] == ["1", "19", "19", "16", "84%"]
    assert rows["v2"] == ["1", "6", "6", "0", "0%"]
    escaped = "&lt;script&gt;v3&lt;/script&gt;"
    assert rows[escaped] == ["1", "5", "0", "0", "–"] and PROBE not in html
    names = re.findall(r'<svg class="chart" data-chart="([^"]+)"', html)
    assert names == [
        "retained-chars-per-day",
        "retained-chars-per-version",
        "retention-per-version",
    ]
    today = re.findall(r"<title>[^<]*: retained (\d+)</title>", html)
    assert "16" in today  # today's bar: the characters kept
    assert 'aria-current="page">Retention<' in html


def test_the_json_is_what_the_page_draws(store: LiveStore) -> None:
    reply = httpx.get(
        f"{store.url}/v1/stats/retention",
        params={"days": 3},
        headers={"Authorization": f"Bearer {store.admin_token}"},
    )
    assert reply.status_code == 200, reply.text
    data = reply.json()
    # accepted in one batch, at one instant: by name
    assert len(data["days"]) == 3 and data["versions"] == [PROBE, "v1", "v2"]
    assert [r["retained_chars"] for r in data["per_version"]] == [0, 16, 0]
    assert [r["adapter_version"] for r in data["per_day"]] == [PROBE, "v1", "v2"]


def test_only_admins_see_it(store: LiveStore) -> None:
    url = f"{store.url}/v1/stats/retention"
    assert httpx.get(url).status_code == 401
    bearer = {"Authorization": f"Bearer {store.annotator_token}"}
    assert httpx.get(url, headers=bearer).status_code == 403
    with closing(httpx.Client(base_url=store.url)) as anonymous:
        assert anonymous.get("/dashboard/retention").headers["location"] == "/dashboard/login"
