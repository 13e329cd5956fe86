"""crlhf's contract: what the store, the language server, the trainer and the demo agree on.

- :mod:`crlhf_contract.schemas`: the HTTP API's payloads (pydantic), one definition each
- :mod:`crlhf_contract.client`: the typed :class:`~crlhf_contract.client.StoreClient`
- :mod:`crlhf_contract.digest`: adapter folder digests and safe archive extraction
- :mod:`crlhf_contract.protocol`: crlhf-lsp's custom LSP methods, commands and payloads
- :mod:`crlhf_contract.signing`: Ed25519 signatures of published adapters (``cryptography``,
  imported only when a key is used)

It depends on pydantic, httpx and the standard library only: never on FastAPI, SQLAlchemy,
torch or any other crlhf package (an import-linter contract and a test hold it to that).
"""

__all__: list[str] = []
