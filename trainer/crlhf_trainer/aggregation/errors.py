"""The errors of :mod:`crlhf_trainer.aggregation` (which imports nothing else of the trainer)::

AggregationError
 └── LabelFileError   a labels/gold file or an export page that can't be read
"""

from __future__ import annotations

__all__ = ["AggregationError", "LabelFileError"]


class AggregationError(Exception):
    """Base class of the errors the aggregation raises on purpose."""


class LabelFileError(AggregationError):
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
