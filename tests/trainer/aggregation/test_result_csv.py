"""The posteriors file: byte for byte what csv's writer with f"{p:.6f}" writes."""

from __future__ import annotations

import csv
import doctest
import io

import numpy as np
import pytest
from crlhf_trainer.aggregation import result_csv


def reference(items, p) -> bytes:
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["item", "p_correct"])
    w.writerows(zip(items, (f"{v:.6f}" for v in np.asarray(p).tolist()), strict=True))
    return out.getvalue().encode("utf-8")


def written(items, p) -> bytes:
    out = io.BytesIO()
    result_csv.write_posteriors(out, items, np.asarray(p, dtype=np.float64))
    return out.getvalue()


def test_doctests():
    failed, attempted = doctest.testmod(result_csv)
    assert attempted and not failed


def hard_values(n: int) -> np.ndarray:
    """Uniform values, halves of the sixth decimal and their neighbours, ties, 0 and 1."""
    rng = np.random.default_rng(0)
    halves = (np.arange(n) + 0.5) / 1e6
    ties = np.arange(n) / 128.0 % 1.0  # k/128: exactly a half of the sixth decimal
    near = np.concatenate([np.nextafter(halves, 0), np.nextafter(halves, 1)])
    return np.concatenate([rng.uniform(size=n), halves, ties, near, [0.0, 1.0, 5e-7, 1 - 5e-7]])


@pytest.mark.parametrize("rows", [1 << 16, 7])  # one block, and many blocks
def test_same_bytes_as_the_csv_writer(monkeypatch, rows):
    monkeypatch.setattr(result_csv, "_ROWS", rows)
    p = hard_values(20_000)
    items = [f"c{k % 97}é:{k}" if k % 3 else f"{k}" for k in range(p.size)]
    assert written(items, p) == reference(items, p)


@pytest.mark.parametrize(
    "items, p",
    [
        (["a,b", "c"], [0.5, 0.25]),  # quoted by the writer
        (['say "hi"', "c"], [0.5, 0.25]),
        (["line\nbreak", "c"], [0.5, 0.25]),
        (["cr\r", "c"], [0.5, 0.25]),
        (["a", "b"], [1.5, -0.25]),  # outside [0, 1]
        (["a", "b"], [float("nan"), 0.5]),
        ([], []),
    ],
)
def test_anything_else_goes_through_the_csv_writer(items, p):
    assert written(items, p) == reference(items, p)
