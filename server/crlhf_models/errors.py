"""The errors of crlhf_models; each names the model and the fix (hierarchy in ``__init__``)."""

from __future__ import annotations


class ModelError(Exception):
    """Base class: a model setting could not be turned into a loadable model."""


class ModelNotInstalled(ModelError):
    """A known model's package is not installed."""


class ModelNotFound(ModelError):
    """The setting names no known model, no local path and no cached hub model."""


class ModelChecksumMismatch(ModelError):
    """A model file does not have the sha256 it should have."""


class AdapterError(ModelError):
    """A LoRA adapter that cannot be read, converted or loaded on its base model.

    The trainer's and the language server's adapter errors derive from this one, so
    ``except crlhf_models.AdapterError`` catches an adapter problem wherever it arose.
    """
