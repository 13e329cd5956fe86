"""Agreement you can see (issue 15) over real HTTP: a store process holding the simulated
crowd of ``dashboard/crowd.py``; the agreement page, the heat map, the stats endpoints,
minting a honeypot in one click (admin scope, CSRF, bad input), and an annotator's own
page, which is all an annotator's login opens.
"""

from __future__ import annotations

import re
from contextlib import closing

import httpx
import pytest
from conftest import LiveStore
from crlhf_store.db import Database
from crlhf_store.models import Completion, Honeypot, LineRating
from dashboard.crowd import NAMES, XSS, bearer, login, page_csrf
from sqlalchemy import func, select


def honeypot_rows(store: LiveStore) -> dict:  # type: ignore[type-arg]
    db = Database(store.database_url, pool_size=1, max_overflow=0)
    try:
        with db.reading() as s:
            return {
                c.text: (c.prompt, h.truth, c.language)
                for c, h in s.execute(
                    select(Completion, Honeypot).join(
                        Honeypot, Honeypot.completion_id == Completion.id
                    )
                )
            }
    finally:
        db.dispose()


def count_honeypots(store: LiveStore) -> int:
    db = Database(store.database_url, pool_size=1, max_overflow=0)
    try:
        with db.reading() as s:
            return s.scalar(select(func.count()).select_from(Honeypot))  # type: ignore[return-value]
    finally:
        db.dispose()


def crowd_votes(store: LiveStore) -> int:
    db = Database(store.database_url, pool_size=1, max_overflow=0)
    try:
        with db.reading() as s:
            return s.scalar(  # type: ignore[return-value]
                select(func.count())
                .select_from(LineRating)
                .where(LineRating.own.is_(False), LineRating.superseded.is_(False))
            )
    finally:
        db.dispose()


def test_agreement_page(admin: httpx.Client, crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    reply = admin.get("/dashboard/agreement")
    assert reply.status_code == 200, reply.text
    html = reply.text
    api = httpx.get(f"{store.url}/v1/stats/agreement", headers=bearer(store.admin_token)).json()
    assert f'<dd id="alpha">{api["alpha"]["alpha"]:.3f}</dd>' in html
    for lang in ("python", "typescript", "go", "rust"):
        assert f'<td class="name">{lang}</td>' in html
    disputed = re.findall(r'href="/dashboard/completions/([0-9a-f-]+)#line-(\d+)"', html)
    assert len(disputed) == 20
    assert html.count('action="/dashboard/honeypots/mint"') == 20
    assert re.search(
        r'<svg class="chart" data-chart="calibration".*?<rect class="s1 bin"', html, re.S
    )
    assert re.search(r'<dd id="brier">0\.\d{3}</dd>', html) and 'id="ece"' in html
    # the disputed line's completion, with its votes and a mint form per line
    cid, line = disputed[0]
    page = admin.get(f"/dashboard/completions/{cid}")
    assert page.status_code == 200 and f'<tr id="line-{line}">' in page.text
    assert page.text.count('action="/dashboard/honeypots/mint"') == 4
    assert admin.get("/dashboard/completions/not-an-id").status_code == 404
    assert (
        admin.get(f"/dashboard/completions/{'0' * 8}-0000-0000-0000-{'0' * 12}").status_code == 404
    )


def test_heat_map_on_the_annotators_page(admin: httpx.Client) -> None:
    html = admin.get("/dashboard/annotators").text
    svg = re.search(r'<svg class="chart" data-chart="pairwise-agreement".*?</svg>', html, re.S)
    assert svg is not None
    cells = re.findall(r'<rect class="cell (h\d|none)"', svg.group(0))
    n = len(NAMES)
    assert len(cells) == n * (n - 1)  # every ordered pair, the diagonal left out
    assert "&lt;img src=x onerror=alert(1)&gt;" in svg.group(0) and "<img" not in html
    assert re.search(r'<table id="agreement-with-aggregate">', html)


def test_stats_endpoints(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, filled = crowd_store

    def get(name: str, token: str, **params: int) -> httpx.Response:
        return httpx.get(f"{store.url}/v1/stats/{name}", params=params, headers=bearer(token))

    for name in ("agreement", "disagreement", "calibration"):
        assert httpx.get(f"{store.url}/v1/stats/{name}").status_code == 401
        assert get(name, filled.tokens["ada"]).status_code == 403
        assert get(name, store.trainer_token).status_code == 403
    agreement = get("agreement", store.admin_token).json()
    assert agreement["verdict_source"] == f"em2 run #{filled.run_ids[-1]}"
    assert agreement["votes"] == crowd_votes(store) < filled.ratings  # the authors' own left out
    assert 0 < agreement["alpha"]["alpha"] < 1
    rows = {r["annotator"]: r for r in agreement["annotators"]}
    assert set(rows) == set(NAMES) and rows[XSS]["agreement"] < 0.5  # the adversary
    assert len(agreement["pairs"]) == len(NAMES) * (len(NAMES) - 1) // 2
    disputed = get("disagreement", store.admin_token, limit=5).json()["lines"]
    assert len(disputed) == 5
    assert [d["score"] for d in disputed] == sorted((d["score"] for d in disputed), reverse=True)
    assert get("disagreement", store.admin_token, limit=0).status_code == 422
    calibration = get("calibration", store.admin_token, bins=5).json()
    assert len(calibration["bins"]) == 5 and calibration["lines"] == sum(
        b["n"] for b in calibration["bins"]
    )
    assert calibration["lines"] > 0 and 0 <= calibration["ece"] <= 1


def test_my_stats_endpoint(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, filled = crowd_store
    assert httpx.get(f"{store.url}/v1/stats/me").status_code == 401
    mine = httpx.get(f"{store.url}/v1/stats/me", headers=bearer(filled.tokens["ada"])).json()
    admin_rows = httpx.get(
        f"{store.url}/v1/stats/annotators", headers=bearer(store.admin_token)
    ).json()["annotators"]
    ada = next(r for r in admin_rows if r["annotator"] == "ada")
    assert mine["annotator"] == "ada" and mine["ratings"] == ada["ratings"]
    assert mine["honeypot_answers"] == ada["honeypot_answers"]
    assert mine["honeypot_accuracy"] == pytest.approx(ada["honeypot_accuracy"])


def test_annotator_login_opens_their_page_only(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, filled = crowd_store
    with closing(httpx.Client(base_url=store.url)) as http:
        form = http.get("/dashboard/login")
        reply = http.post(
            "/dashboard/login", data={"token": filled.tokens["ada"], "csrf": page_csrf(form.text)}
        )
        assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/me"
        me = http.get("/dashboard/me")
        assert me.status_code == 200 and "<h1>ada</h1>" in me.text
        assert re.search(r'<dd id="my-ratings">\d+</dd>', me.text)
        assert re.search(r'<span id="my-interval">\d+%–\d+%</span>', me.text)
        assert re.search(r'<dd id="my-queue">\d+</dd>', me.text)
        for other in NAMES[1:]:
            assert f"<h1>{other}" not in me.text
        assert 'href="/dashboard/annotators"' not in me.text  # no admin tabs
        for path in (
            "/dashboard",
            "/dashboard/annotators",
            "/dashboard/agreement",
            "/dashboard/honeypots",
            f"/dashboard/completions/{'0' * 8}-0000-0000-0000-{'0' * 12}",
        ):
            denied = http.get(path)
            assert denied.status_code == 403 and "grace" not in denied.text, path
        assert http.get("/dashboard/login").headers["location"] == "/dashboard/me"
        before = count_honeypots(store)
        disputed = httpx.get(
            f"{store.url}/v1/stats/disagreement", headers=bearer(store.admin_token)
        ).json()["lines"][0]
        data = {
            "csrf": page_csrf(me.text),
            "completion_id": disputed["completion_id"],
            "line": str(disputed["line"]),
            "truth": "1",
        }
        assert http.post("/dashboard/honeypots/mint", data=data).status_code == 403
        assert count_honeypots(store) == before
        logout = http.post("/dashboard/logout", data={"csrf": page_csrf(me.text)})
        assert logout.status_code == 303 and http.get("/dashboard/me").status_code == 303


def test_a_trainer_token_opens_no_session(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    with closing(httpx.Client(base_url=store.url)) as http:
        form = http.get("/dashboard/login")
        reply = http.post(
            "/dashboard/login", data={"token": store.trainer_token, "csrf": page_csrf(form.text)}
        )
        assert reply.status_code == 403 and "lacks the `admin` scope" in reply.text
        assert "crlhf_dashboard" not in http.cookies


def test_mint_a_honeypot_in_one_click(admin: httpx.Client, crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    page = admin.get("/dashboard/agreement").text
    form = re.search(r'<form class="mint".*?</form>', page, re.S).group(0)  # type: ignore[union-attr]
    fields = dict(re.findall(r'name="(csrf|completion_id|line)" value="([^"]+)"', form))
    code = re.search(r"<td><code>(.*?)</code></td>", page.split(form)[0].rsplit("<tr>", 1)[1])
    before = count_honeypots(store)

    # no CSRF token, or a wrong one: refused, nothing changes
    for csrf in ("", "wrong"):
        reply = admin.post("/dashboard/honeypots/mint", data=fields | {"csrf": csrf, "truth": "-1"})
        assert reply.status_code == 403
    assert count_honeypots(store) == before

    # bad input: a clear error, nothing changes
    bad = [
        ({"truth": "0"}, 422, "`truth` must be 1 (👍 correct) or -1 (👎 wrong)"),
        ({"truth": "-1", "line": "9"}, 422, "has lines 0 to 3, not 9"),
        ({"truth": "-1", "line": "x"}, 422, "`line` must be a line number"),
        ({"truth": "-1", "completion_id": "nope"}, 422, "is not a completion id"),
        (
            {"truth": "-1", "completion_id": f"{'0' * 8}-0000-0000-0000-{'0' * 12}"},
            404,
            "no completion",
        ),
    ]
    for change, status, message in bad:
        reply = admin.post("/dashboard/honeypots/mint", data=fields | change)
        assert reply.status_code == status and message in reply.text, (change, reply.text[-500:])
        assert 'id="mint-error"' in reply.text
    assert count_honeypots(store) == before

    # the click: 👎 wrong
    reply = admin.post("/dashboard/honeypots/mint", data=fields | {"truth": "-1"})
    assert reply.status_code == 200 and "is now honeypot" in reply.text, reply.text[-800:]
    assert count_honeypots(store) == before + 1
    text = code.group(1)  # type: ignore[union-attr]
    prompt, truth, language = honeypot_rows(store)[text]
    assert truth == [-1] and language in ("python", "typescript", "go", "rust")
    assert prompt.startswith("def f")
    # the line is marked, and a second click keeps the first truth
    assert '<span class="badge ok">honeypot</span>' in reply.text
    again = admin.post("/dashboard/honeypots/mint", data=fields | {"truth": "1"})
    assert again.status_code == 200 and "was a honeypot already" in again.text
    assert count_honeypots(store) == before + 1 and honeypot_rows(store)[text][1] == [-1]
    # its completion's page marks the line too
    page = admin.get(f"/dashboard/completions/{fields['completion_id']}").text
    row = re.search(rf'<tr id="line-{fields["line"]}">.*?</tr>', page, re.S).group(0)  # type: ignore[union-attr]
    assert '<span class="badge ok">honeypot</span>' in row
    assert page.count('action="/dashboard/honeypots/mint"') == 3
    # and the honeypots page counts it
    assert f'<dd id="n-honeypots">{before + 1}</dd>' in admin.get("/dashboard/honeypots").text


def test_pages_of_an_empty_store(live_store: LiveStore) -> None:
    with closing(login(live_store.url, live_store.admin_token)) as http:
        for path in ("/dashboard/agreement", "/dashboard/annotators"):
            reply = http.get(path)
            assert reply.status_code == 200 and "No votes yet." in reply.text, path
        assert "No line has split votes." in http.get("/dashboard/agreement").text
    with closing(httpx.Client(base_url=live_store.url)) as http:
        form = http.get("/dashboard/login")
        data = {"token": live_store.annotator_token, "csrf": page_csrf(form.text)}
        assert http.post("/dashboard/login", data=data).headers["location"] == "/dashboard/me"
        me = http.get("/dashboard/me")
        assert me.status_code == 200 and "No lines of known truth rated yet" in me.text
