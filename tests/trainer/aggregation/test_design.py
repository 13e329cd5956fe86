"""em2's design matrix in numpy: the same bits as the scipy.sparse CSR/CSC products it
replaced, whether the labels come grouped by line or not."""

from __future__ import annotations

import numpy as np
import pytest
from crlhf_trainer.aggregation.design import Design
from crlhf_trainer.simulate import simulate_crowd

sparse = pytest.importorskip("scipy.sparse")


def scipy_design(labels):
    """What em2 built before: CSR from the running count when grouped, else from COO."""
    n, m = labels.n_items, labels.n_annotators
    col = labels.annotator_idx.astype(np.int32) + np.where(labels.label > 0, 0, m).astype(np.int32)
    ones = np.ones(labels.n_labels)
    items = labels.item_idx
    if np.all(items[1:] >= items[:-1]):
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(items, minlength=n), out=indptr[1:])
        return sparse.csr_matrix((ones, col, indptr), shape=(n, 2 * m))
    return sparse.csr_matrix((ones, (items, col)), shape=(n, 2 * m))


@pytest.mark.parametrize("shuffled", [False, True])
def test_products_are_scipy_s_bit_for_bit(shuffled):
    labels = simulate_crowd(2000, 20, {"reliable": 0.7, "adversary": 0.3}, seed=3).labels
    if shuffled:
        labels = labels.take(np.random.default_rng(0).permutation(labels.n_labels))
    ours, theirs = Design(labels), scipy_design(labels)
    rng = np.random.default_rng(1)
    w, q = rng.normal(size=2 * labels.n_annotators), rng.uniform(size=labels.n_items)
    assert np.array_equal(ours.dot(w), theirs @ w)
    assert np.array_equal(ours.tdot(q), theirs.T @ q)
    assert np.array_equal(ours.column_counts(), np.bincount(theirs.indices, minlength=w.size))
