"""The exception hierarchy of ``crlhf_trainer``.

Every error the trainer raises on purpose derives from one base class, so a caller (the
CLI, the nightly job) can catch them all and print one line::

    CrlhfTrainError
     ├── TrainConfigError    a setting that can't work (unknown method, bad margin …)
     ├── NoTrainingData      nothing usable to train on (empty store, no token ids …)
     ├── StoreGone           the store failed mid-run; a re-run resumes from the cursor
     └── AdapterError        an adapter that can't be loaded or fails its checksum

Label input errors come from the aggregation package (which imports nothing else of the
trainer): :class:`~crlhf_trainer.aggregation.errors.AggregationError` and its
``LabelFileError``; the CLI catches both hierarchies.
"""

from __future__ import annotations

from crlhf_models.errors import AdapterError as _ModelAdapterError

from .aggregation.errors import AggregationError, LabelFileError

__all__ = [
    "AdapterError",
    "AggregationError",
    "CrlhfTrainError",
    "LabelFileError",
    "NoTrainingData",
    "StoreGone",
    "TrainConfigError",
]


class CrlhfTrainError(Exception):
    """Base class of the errors crlhf_trainer raises on purpose."""


class TrainConfigError(CrlhfTrainError):
    """A training, evaluation or publishing setting that cannot work; names the fix."""


class NoTrainingData(CrlhfTrainError):
    """Nothing to train on: the store is empty or no completion carries token ids."""


class StoreGone(CrlhfTrainError):
    """The store failed or vanished mid-run; nothing was published, re-run to resume."""


class AdapterError(CrlhfTrainError, _ModelAdapterError):
    """An adapter folder that cannot be loaded, or whose files fail their checksum."""
