"""schemathesis against the live OpenAPI of a real store: no 5xx, no schema violations.

Bounded on purpose (``EXAMPLES`` per operation and generation mode, a few hundred requests
in all) so the suite stays fast; derandomised so a failure reproduces. Driven through
Hypothesis directly: schemathesis' lazy pytest fixture loader does not run on pytest 9.
"""

from __future__ import annotations

import hashlib

import pytest
import schemathesis
from conftest import LiveStore, start_live_store
from crlhf_contract.digest import manifest_digest
from hypothesis import HealthCheck, given, settings
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


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    store = start_live_store(tmp_path_factory.mktemp("schemathesis"))
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
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
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
