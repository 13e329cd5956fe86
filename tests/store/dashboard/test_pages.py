"""The dashboard against a real store process holding a simulated crowd's data.

One store per module (filling it takes a few seconds): ``dashboard/crowd.py`` posts the
crowd simulator's completions, events and line ratings through the HTTP API, imports
honeypots through the dashboard's form, and posts two aggregation runs and two adapters
as the trainer would. Tests that change state (publish, logout, revoke) come last or use
their own sessions.
"""

from __future__ import annotations

import re
from contextlib import closing

import httpx
import pytest
from crlhf_store.db import Database
from crlhf_store.tokens import revoke_token
from dashboard.crowd import XSS, bearer, login, page_csrf

PAGES = [
    "/dashboard",
    "/dashboard/annotators",
    "/dashboard/rewards",
    "/dashboard/adapters",
    "/dashboard/honeypots",
    "/dashboard/agreement",
    "/dashboard/retention",
    "/dashboard/adapters/v2/publish",
]
STATS = [
    "overview",
    "annotators",
    "rewards",
    "adapters",
    "honeypots",
    "agreement",
    "disagreement",
    "calibration",
    "retention",
]


def chart_marks(html: str) -> list[int]:
    """Marks drawn in each ``<svg class="chart">`` of a page."""
    svgs = re.findall(r'<svg class="chart".*?</svg>', html, flags=re.S)
    return [len(re.findall(r"<(?:rect|circle|polyline)(?! class=\"frame\")", s)) for s in svgs]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_with_its_charts(admin: httpx.Client, path: str) -> None:
    reply = admin.get(path)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/html")
    assert "script-src" not in reply.headers["content-security-policy"]  # none allowed
    assert "default-src 'none'" in reply.headers["content-security-policy"]
    if not path.endswith("/publish"):
        marks = chart_marks(reply.text)
        assert marks and all(n > 0 for n in marks), marks


def test_figures_match_what_was_posted(admin: httpx.Client, crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, filled = crowd_store
    overview = admin.get("/dashboard").text
    assert f'<dd id="n-ratings">{filled.ratings}</dd>' in overview
    honeypots = admin.get("/dashboard/honeypots").text
    assert f'<dd id="n-honeypots">{filled.honeypots}</dd>' in honeypots


def test_xss_probe_renders_as_text(admin: httpx.Client) -> None:
    for path in ("/dashboard/annotators", "/dashboard/honeypots"):
        html = admin.get(path).text
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "<img" not in html


def test_annotators_sort_by_every_column(admin: httpx.Client) -> None:
    def names(html: str) -> list[str]:
        return re.findall(r'<td class="name">(.*?)</td>', html)

    by_name = names(admin.get("/dashboard/annotators").text)
    assert by_name == sorted(by_name)
    html = admin.get("/dashboard/annotators", params={"sort": "ratings", "order": "desc"}).text
    counts = [
        int(n) for n in re.findall(r'<td class="name">.*?</td>\s*<td class="num">(\d+)', html)
    ]
    assert counts == sorted(counts, reverse=True) and len(counts) == len(by_name)
    for key in ("honeypot_accuracy", "reliability", "flag", "last_active", "bogus"):
        reply = admin.get("/dashboard/annotators", params={"sort": key, "order": "asc"})
        assert reply.status_code == 200 and len(names(reply.text)) == len(by_name)


def test_pages_need_a_session(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    for path in PAGES:
        reply = httpx.get(store.url + path, headers=bearer(store.admin_token))
        assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/login"
    forged = httpx.get(store.url + "/dashboard", cookies={"crlhf_dashboard": store.admin_token})
    assert forged.status_code == 303


def test_login_keeps_the_token_out_of_cookies_and_urls(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    with httpx.Client(base_url=store.url) as http:
        form = http.get("/dashboard/login")
        reply = http.post(
            "/dashboard/login", data={"token": store.admin_token, "csrf": page_csrf(form.text)}
        )
        assert reply.status_code == 303 and reply.headers["location"] == "/dashboard"
        cookie = next(
            c for c in reply.headers.get_list("set-cookie") if c.startswith("crlhf_dashboard=")
        )
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
        assert store.admin_token not in cookie and store.admin_token not in str(reply.url)
        assert http.get("/dashboard").status_code == 200


@pytest.mark.parametrize(
    ("who", "status", "message"),
    [("trainer", 403, "lacks the `admin` scope"), ("unknown", 401, "unknown or revoked")],
)
def test_login_refuses_non_admins(crowd_store, who: str, status: int, message: str) -> None:  # type: ignore[no-untyped-def]
    """An annotator's token opens their own page only (test_pages_agreement.py)."""
    store, _ = crowd_store
    token = store.trainer_token if who == "trainer" else "crlhf_nope"
    with httpx.Client(base_url=store.url) as http:
        form = http.get("/dashboard/login")
        reply = http.post("/dashboard/login", data={"token": token, "csrf": page_csrf(form.text)})
        assert reply.status_code == status and message in reply.text
        assert "crlhf_dashboard" not in http.cookies


def test_login_without_the_form_csrf_is_refused(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    reply = httpx.post(
        store.url + "/dashboard/login", data={"token": store.admin_token, "csrf": "guess"}
    )
    assert reply.status_code == 403 and "crlhf_dashboard" not in reply.cookies


def test_forms_need_the_csrf_token(admin: httpx.Client, crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    for csrf in ("", "wrong"):
        reply = admin.post("/dashboard/adapters/v2/publish", data={"csrf": csrf})
        assert reply.status_code == 403
        reply = admin.post("/dashboard/honeypots", data={"csrf": csrf, "jsonl": "{}"})
        assert reply.status_code == 403
    with store.client(store.admin_token) as client:
        assert {a.version: a.status for a in client.list_adapters()}["v2"] == "candidate"


def test_honeypot_import_form_refuses_bad_jsonl(admin: httpx.Client) -> None:
    page = admin.get("/dashboard/honeypots")
    before = re.search(r'id="n-honeypots">(\d+)', page.text).group(1)  # type: ignore[union-attr]
    bad = '{"text": "a\\nb", "truth": [1]}'
    reply = admin.post("/dashboard/honeypots", data={"csrf": page_csrf(page.text), "jsonl": bad})
    assert reply.status_code == 422 and "truth" in reply.text
    assert f'id="n-honeypots">{before}<' in reply.text


@pytest.mark.parametrize("name", STATS)
def test_stats_endpoints_need_admin(crowd_store, name: str) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    url = f"{store.url}/v1/stats/{name}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=bearer(store.trainer_token)).status_code == 403
    assert httpx.get(url, headers=bearer(store.admin_token)).status_code == 200


def test_stats_endpoints_serve_the_crowd(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, filled = crowd_store

    def get(name: str, **params: int):  # type: ignore[no-untyped-def]
        reply = httpx.get(
            f"{store.url}/v1/stats/{name}", params=params, headers=bearer(store.admin_token)
        )
        assert reply.status_code == 200, reply.text
        return reply.json()

    overview = get("overview", days=7)
    typo = httpx.get(f"{store.url}/v1/stats/overview?day=7", headers=bearer(store.admin_token))
    assert typo.status_code == 422 and "unknown query parameter 'day'" in typo.text
    assert overview["ratings"] == filled.ratings and len(overview["days"]) == 7
    assert overview["days"][-1]["ratings"] == filled.ratings
    assert overview["completions"] == filled.completions - filled.honeypots
    assert 0 < overview["acceptance_rate"] < 1
    annotators = get("annotators")
    assert annotators["run_id"] == filled.run_ids[-1] and annotators["method"] == "em2"
    rows = {r["annotator"]: r for r in annotators["annotators"]}
    assert set(rows) == set(filled.tokens)
    assert rows[XSS]["flag"] == "adversary"  # the probe is the simulated adversary
    assert all(r["honeypot_answers"] > 0 for r in rows.values())
    for r in rows.values():
        assert r["reliability_low"] <= r["reliability"] <= r["reliability_high"]
        assert r["honeypot_low"] <= r["honeypot_accuracy"] <= r["honeypot_high"]
    rewards = get("rewards")
    assert [r["run_id"] for r in rewards["runs"]] == filled.run_ids
    assert all(sum(r["rewards"]["histogram"]) == r["rewards"]["n"] > 0 for r in rewards["runs"])
    assert {lang["language"] for lang in rewards["languages"]} >= {"python", "go"}
    assert get("rewards", runs=1)["runs"][0]["run_id"] == filled.run_ids[-1]
    adapters = {a["version"]: a for a in get("adapters")}
    assert adapters["v1"]["published_by"] == "trainer" and adapters["v2"]["parent"] == "v1"
    assert {m["metric"]: (m["before"], m["after"]) for m in adapters["v2"]["pass_at"]}[
        "humaneval/pass@1"
    ] == (0.31, 0.34)
    honeypots = get("honeypots")
    assert honeypots["honeypots"] == filled.honeypots
    # the crowd's editors checked every accepted completion: some lines kept, some not
    retention = {r["adapter_version"]: r for r in get("retention", days=2)["per_version"]}
    assert set(retention) == {"v1", "v2"}
    assert all(0 < r["retention"] < 1 for r in retention.values())
    assert all(0 < c["share"] <= 1 for c in honeypots["coverage"])


def test_stats_are_in_the_openapi(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    paths = httpx.get(f"{store.url}/openapi.json").json()["paths"]
    for name in STATS:
        assert "200" in paths[f"/v1/stats/{name}"]["get"]["responses"]
    assert "/metrics" in paths
    assert not any(p.startswith("/dashboard") for p in paths)


def test_metrics(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, filled = crowd_store
    assert httpx.get(f"{store.url}/metrics").status_code == 401
    assert httpx.get(f"{store.url}/metrics", headers=bearer(store.trainer_token)).status_code == 403
    reply = httpx.get(f"{store.url}/metrics", headers=bearer(store.admin_token))
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    assert f"crlhf_store_ratings_ingested_total {float(filled.ratings)}" in text
    served = float(re.search(r"^crlhf_store_review_tasks_served_total (\S+)", text, re.M)[1])  # type: ignore[index]
    assert served == filled.review_tasks
    assert re.search(
        r'crlhf_store_request_duration_seconds_count\{method="POST",route="/v1/ratings",'
        r'status="200"\} [1-9]',
        text,
    )
    assert 'route="/v1/adapters/{version}/publish"' in text  # templates, not raw paths
    assert re.search(r"^crlhf_store_export_lag_seconds \S+", text, re.M)
    assert re.search(r"^crlhf_store_ratings_pending_export 0\.0$", text, re.M)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_stats_and_metrics_keep_their_openapi_contract(crowd_store, mode: str) -> None:  # type: ignore[no-untyped-def]
    """schemathesis on /v1/stats/... and /metrics (the store's own run excludes them)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    store, _ = crowd_store
    schema = schemathesis.openapi.from_url(f"{store.url}/openapi.json")
    ops = [r.ok() for r in schema.include(path_regex=r"^/(metrics|v1/stats)").get_all_operations()]
    assert len(ops) == len(STATS) + 2  # and /v1/stats/me
    headers = bearer(store.admin_token)
    for op in ops:

        @given(case=op.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(
            max_examples=5,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(base_url=store.url, headers=headers)

        try:
            check()
        except Exception as exc:
            raise AssertionError(f"{op.method.upper()} {op.path}: {exc}") from exc


def test_publish_through_the_confirmation_records_who(admin: httpx.Client, crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    confirm = admin.get("/dashboard/adapters/v2/publish")
    assert "Yes, publish v2" in confirm.text
    reply = admin.post("/dashboard/adapters/v2/publish", data={"csrf": page_csrf(confirm.text)})
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/adapters"
    with store.client(store.admin_token) as client:
        assert client.latest_adapter().version == "v2"  # type: ignore[union-attr]
    html = admin.get("/dashboard/adapters").text
    assert "by admin" in html
    # the gate's decision, its reason and each metric's paired interval, as recorded
    assert "not enough evidence (heldout/conventions has 3 items)" in html
    assert "heldout/conventions: Δ" in html and "n=3 (too few)" in html
    assert admin.get("/dashboard/adapters/nope/publish").status_code == 404


def test_logout_and_revocation_end_sessions(crowd_store) -> None:  # type: ignore[no-untyped-def]
    store, _ = crowd_store
    with closing(login(store.url, store.admin_token)) as http:
        page = http.get("/dashboard")
        assert (
            http.post("/dashboard/logout", data={"csrf": page_csrf(page.text)}).status_code == 303
        )
        assert http.get("/dashboard").status_code == 303
    token = store.new_token("second-admin", "admin")
    with closing(login(store.url, token)) as http:
        assert http.get("/dashboard").status_code == 200
        db = Database(store.database_url, pool_size=1, max_overflow=0)
        with db.writing() as session:
            revoke_token(session, token=token)
        db.dispose()
        assert http.get("/dashboard").status_code == 303
