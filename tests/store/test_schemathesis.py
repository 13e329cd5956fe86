"""schemathesis against the live OpenAPI of a real store: no 5xx, no schema violations.

On SQLite and on PostgreSQL (which refuses a NUL in text: the backend where that was a
500). Bounded on purpose (``EXAMPLES`` per operation and generation mode, a few hundred
requests in all) so the suite stays fast; derandomised so a failure reproduces. Driven
through Hypothesis directly: schemathesis' lazy pytest fixture loader does not run on
pytest 9.

schemathesis sends JSON its serializer can write, which has no ``1e400`` or ``NaN``, and it
rarely puts a NUL in a body; :func:`poisoned` takes each schema-valid JSON body it
generates and spoils one number (a non-finite spelling) or one string (a NUL inside): the
store must answer 422 naming that very field.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import psycopg
import pytest
import requests
import schemathesis
from conftest import LiveStore, start_live_store
from crlhf_contract.digest import manifest_digest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from store_helpers import completion

EXAMPLES = 6
EXCLUDED = [
    # A schema-valid batch may still name an unknown completion: the contract says 422.
    schemathesis.checks.positive_data_acceptance,
    # Unknown query parameters are ignored, as HTTP APIs do; bodies are strict (extra=forbid).
    schemathesis.checks.negative_data_rejection,
]


NON_FINITE = ["1e400", "-1e400", "1E+999", "NaN", "Infinity", "-Infinity", "1" + "0" * 400 + ".5"]
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded_store(  # type: ignore[no-untyped-def]
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
):
    database_url = None
    if request.param == "postgresql":
        pg_url = request.getfixturevalue("pg_url")  # skips when PostgreSQL is unreachable
        schema = f"t_{uuid.uuid4().hex[:12]}"
        plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        database_url = f"{pg_url}?options=-csearch_path%3D{schema}"
    store = start_live_store(tmp_path_factory.mktemp("schemathesis"), database_url)
    with store.client(store.trainer_token) as trainer:
        trainer._request("POST", "/v1/completions", json={"completions": [completion()]})
        files = {"adapter_config.json": b"{}"}
        digest = manifest_digest({n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
        trainer._request(
            "POST",
            "/v1/adapters",
            data={"version": "v1", "base_model": "tiny", "sha256": digest},
            files=[("files", (n, b)) for n, b in files.items()],
        )
    yield store
    store.stop()


def operations(store: LiveStore):  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_url(f"{store.url}/openapi.json")
    # The store's own API; the dashboard's pages and stats have their own tests.
    schema = schema.exclude(path_regex=r"^/(dashboard|metrics|v1/stats)")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_contract(seeded_store: LiveStore, mode: GenerationMode) -> None:
    headers = {"Authorization": f"Bearer {seeded_store.admin_token}"}
    ops = operations(seeded_store)
    assert len(ops) >= 17
    for op in ops:

        @given(case=op.as_strategy(generation_mode=mode))
        @SETTINGS
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(
                base_url=seeded_store.url, headers=headers, excluded_checks=EXCLUDED
            )

        try:
            check()
        except Unsatisfiable:  # negative mode: nothing to break in an operation without input
            assert mode is GenerationMode.NEGATIVE
        except Exception as exc:
            raise AssertionError(f"{op.method.upper()} {op.path}: {exc}") from exc


# --- spoiled bodies: non-finite numbers and NULs ---------------------------------------------


Path = tuple[str | int, ...]


def leaves(value: Any, path: Path = ()) -> list[tuple[Path, Any]]:
    """The numbers and strings of a JSON value, with where they are."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in leaves(v, (*path, i))]
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return [(path, value)]
    return []


def replaced(value: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = replaced(value[head], tuple(rest), new)  # type: ignore[index,call-overload]
    return copy


def has_nul(value: Any) -> bool:
    return "\\u0000" in json.dumps(value)  # in a string or a key


@st.composite
def poisoned(draw: st.DrawFn, body: Any) -> tuple[bytes, Path]:
    """``body`` as JSON with one number spelled non-finite or one string holding a NUL."""
    path, leaf = draw(st.sampled_from(leaves(body)))
    if isinstance(leaf, str):
        at = draw(st.integers(0, len(leaf)))
        return json.dumps(replaced(body, path, leaf[:at] + "\x00" + leaf[at:])).encode(), path
    marker = "\x01poison\x01"
    raw = json.dumps(replaced(body, path, marker)).replace(
        json.dumps(marker), draw(st.sampled_from(NON_FINITE))
    )
    return raw.encode(), path


def test_non_finite_numbers_and_nul_are_422_naming_the_field(seeded_store: LiveStore) -> None:
    headers = {
        "Authorization": f"Bearer {seeded_store.admin_token}",
        "Content-Type": "application/json",
    }
    json_ops = [
        op
        for op in operations(seeded_store)
        if any(b.media_type == "application/json" for b in op.body)
    ]
    assert len(json_ops) >= 4
    sent = 0
    for op in json_ops:

        @given(case=op.as_strategy(generation_mode=GenerationMode.POSITIVE), data=st.data())
        @SETTINGS
        def check(case, data) -> None:  # type: ignore[no-untyped-def]
            nonlocal sent
            if not leaves(case.body):
                return
            raw, path = data.draw(poisoned(case.body))
            kwargs = case.as_transport_kwargs(base_url=seeded_store.url, headers=headers)
            kwargs.pop("json", None)
            response = requests.request(**kwargs, data=raw, timeout=30)
            sent += 1
            assert response.status_code == 422, (raw[:300], response.text[:300])
            loc = response.json()["detail"][0]["loc"]
            if not has_nul(case.body):  # else that other NUL may be the one named
                assert loc == ["body", *path], (raw[:300], response.text[:300])

        try:
            check()
        except Exception as exc:
            raise AssertionError(f"{op.method.upper()} {op.path}: {exc}") from exc
    assert sent >= len(json_ops)
