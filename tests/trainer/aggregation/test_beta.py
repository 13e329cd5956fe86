"""Beta quantiles in numpy: scipy.special's betaincinv (the reference, a dev dependency) to
~1e-11 over parameters from 1e-3 to 1e5, at the interval ends and far out in the tails."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from crlhf_trainer.aggregation import beta

special = pytest.importorskip("scipy.special")


def test_doctests():
    failed, attempted = doctest.testmod(beta)
    assert attempted and not failed


def grid(low: float, high: float, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tuple(np.exp(rng.uniform(np.log(low), np.log(high), n)) for _ in range(2))


@pytest.mark.parametrize("low, high", [(1e-3, 1.0), (1.0, 1e3), (1e2, 1e5), (1e-3, 1e5)])
@pytest.mark.parametrize("p", [0.05, 0.95, 0.5, 1e-6])
def test_quantiles_match_scipy(low, high, p):
    a, b = grid(low, high)
    ours = beta.beta_ppf(a, b, p)
    assert np.abs(ours - special.betaincinv(a, b, p)).max() < 1e-10
    # what the intervals report, six decimals, is the same
    assert np.array_equal(np.round(ours, 6), np.round(special.betaincinv(a, b, p), 6))


def test_incomplete_beta_matches_scipy():
    a, b = grid(1e-3, 1e5, 1000)
    x = np.random.default_rng(1).uniform(0, 1, 1000)
    assert np.abs(beta.betainc(a, b, x) - special.betainc(a, b, x)).max() < 1e-11


def test_edges_and_shapes():
    # a quantile beyond the doubles' range is 0 (scipy: the smallest double); p = 0 or 1
    assert beta.beta_ppf(np.array([1e-18]), np.array([1e-9]), 0.05)[0] < 1e-300
    assert beta.beta_ppf(1.0, 1.0, np.array([0.0, 0.3, 1.0])).tolist() == pytest.approx([0, 0.3, 1])
    assert beta.beta_ppf(np.ones((2, 3)), np.ones((2, 3)), 0.25).shape == (2, 3)
    assert beta.beta_ppf(np.array([]), np.array([]), 0.05).shape == (0,)
    # the typical em2 interval: many labels, a and b in the thousands
    a, b = np.array([1.8e4, 9.5e3]), np.array([2.1e3, 4.0e2])
    assert np.abs(beta.beta_ppf(a, b, 0.05) - special.betaincinv(a, b, 0.05)).max() < 1e-12
