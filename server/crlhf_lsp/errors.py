"""crlhf-lsp's exceptions, one hierarchy::

    CrlhfLspError
     ├── SettingsError      a setting has a wrong type or value (the message names the key)
     ├── BackendError       the model could not be loaded or failed to generate
     ├── AdapterError       an adapter could not be downloaded, verified or loaded
     │    └── AdapterMismatch  the adapter does not fit the base model
     └── OutboxFull         the outbox reached its bound; the store has been away too long

Store errors come from :mod:`crlhf_contract.client` (``StoreUnavailable``, ``StoreRejected``).
"""

from __future__ import annotations

from crlhf_models.errors import AdapterError as _ModelAdapterError


class CrlhfLspError(Exception):
    """Base class of crlhf-lsp's errors."""


class SettingsError(CrlhfLspError):
    pass


class BackendError(CrlhfLspError):
    pass


class AdapterError(CrlhfLspError, _ModelAdapterError):
    """Also a :class:`crlhf_models.AdapterError`: one catch for every adapter problem."""


class AdapterMismatch(AdapterError):
    pass


class OutboxFull(CrlhfLspError):
    pass
