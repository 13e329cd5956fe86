"""The real server process: the shared ``live_store`` fixture, restarts, concurrency."""

from __future__ import annotations


def test_live_store_fixture_serves_every_scope(live_store) -> None:
    with live_store.client() as alice, live_store.client(live_store.trainer_token) as trainer:
        assert alice.me().annotator == "alice"
        assert trainer.me().scopes == ["annotator", "trainer"]
    with live_store.client(live_store.admin_token) as admin:
        assert "admin" in admin.me().scopes
