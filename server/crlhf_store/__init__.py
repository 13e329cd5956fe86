"""crlhf-store: the team feedback store (HTTP API, database, adapter registry).

Kept light on purpose: the language server imports ``crlhf_store.schemas`` and
``crlhf_store.client`` without the store's server dependencies (FastAPI, SQLAlchemy), so
nothing here may import them. The app lives in :mod:`crlhf_store.app`.
"""

__all__: list[str] = []
