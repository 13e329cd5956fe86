"""The exception hierarchy of ``crlhf_trainer``.

Every error the trainer raises on purpose derives from one base class, so a caller (the
CLI, the nightly job) can catch them all and print one line::

    CrlhfTrainError
     ├── LabelFileError      a labels/gold file or an export page that can't be read
     ├── TrainConfigError    a setting that can't work (unknown method, bad margin …)
     ├── NoTrainingData      nothing usable to train on (empty store, no token ids …)
     ├── StoreGone           the store failed mid-run; a re-run resumes from the cursor
     └── AdapterError        an adapter that can't be loaded or fails its checksum
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "CrlhfTrainError",
    "LabelFileError",
    "NoTrainingData",
    "StoreGone",
    "TrainConfigError",
]


class CrlhfTrainError(Exception):
    """Base class of the errors crlhf_trainer raises on purpose."""


class LabelFileError(CrlhfTrainError):
    """Bad label input; the message names the file, the line and the problem.

    >>> str(LabelFileError("labels.csv", 3, "unknown label 'x'"))
    "labels.csv line 3: unknown label 'x'"
    """

    def __init__(self, path: object, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = self.path if line is None else f"{self.path} line {line}"
        super().__init__(f"{where}: {problem}")


class TrainConfigError(CrlhfTrainError):
    """A training, evaluation or publishing setting that cannot work; names the fix."""


class NoTrainingData(CrlhfTrainError):
    """Nothing to train on: the store is empty or no completion carries token ids."""


class StoreGone(CrlhfTrainError):
    """The store failed or vanished mid-run; nothing was published, re-run to resume."""


class AdapterError(CrlhfTrainError):
    """An adapter folder that cannot be loaded, or whose files fail their checksum."""
