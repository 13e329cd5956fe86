"""Helpers of the store tests: an in-process app on a given database, payload builders."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crlhf_store.app import create_app
from crlhf_store.settings import StoreSettings
from crlhf_store.tokens import create_annotator
from fastapi.testclient import TestClient


@dataclass
class Api:
    """A TestClient on a fresh store plus a token per scope (alice, bob: annotators)."""

    http: TestClient
    tokens: dict[str, str]
    app: Any

    def call(self, method: str, path: str, who: str = "alice", **kw: Any):  # type: ignore[no-untyped-def]
        headers = kw.pop("headers", {}) | {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.http.request(method, path, headers=headers, **kw)

    def get(self, path: str, who: str = "alice", **kw: Any):  # type: ignore[no-untyped-def]
        return self.call("GET", path, who, **kw)

    def post(self, path: str, who: str = "alice", **kw: Any):  # type: ignore[no-untyped-def]
        return self.call("POST", path, who, **kw)


@contextmanager
def api_on(database_url: str, data_dir: Path, **settings: Any) -> Iterator[Api]:
    app = create_app(StoreSettings(database_url=database_url, data_dir=data_dir, **settings))
    with TestClient(app) as http:  # runs the lifespan: migrations
        with app.state.store.db.writing() as session:
            tokens = {
                who: create_annotator(session, name=who, scope=scope)
                for who, scope in [
                    ("alice", "annotator"),
                    ("bob", "annotator"),
                    ("carol", "annotator"),
                    ("trainer", "trainer"),
                    ("admin", "admin"),
                ]
            }
        yield Api(http=http, tokens=tokens, app=app)


def completion(text: str = "a = 1\nb = 2\nreturn a + b\n", **kw: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "prompt": "def f():\n",
        "suffix": "",
        "language": "python",
        "text": text,
        "model": "tiny",
        "adapter_version": None,
        "token_ids": [1, 2, 3],
        "token_logprobs": [-0.5, -0.25, -0.125],
        "prompt_token_ids": [7, 8],
    } | kw


def rating(completion_id: str, line: int = 0, label: int = 1) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "completion_id": completion_id,
        "line": line,
        "label": label,
    }
