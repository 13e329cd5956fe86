"""crlhf-store: the team feedback store (HTTP API, database, adapter registry).

The wire contract (schemas, the typed client, digests) lives in :mod:`crlhf_contract`,
which the language server and the trainer import without the store's server dependencies.
The app lives in :mod:`crlhf_store.app`.
"""

__all__: list[str] = []
