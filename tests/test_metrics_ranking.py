"""Ranking metrics (MRR, NDCG@k, MAP@k) in both forms, against scikit-learn.

Class targets: sklearn's label_ranking_average_precision_score is the MRR
of one relevant label, ndcg_score takes the one-hot targets. Graded
relevance: ndcg_score directly, average_precision_score per query for MAP.
Cut-offs sklearn lacks are checked against plain per-query loops.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    average_precision_score,
    label_ranking_average_precision_score,
    ndcg_score,
)

from torchyard_builtins.metrics import functional as F
from torchyard_builtins.metrics._common import argsort_descending, tie_runs
from torchyard_builtins.metrics.ranking import MAP, MRR, NDCG

from .conftest import feed_in_chunks as feed


def draw_scores(rng: np.random.Generator, shape: tuple[int, int], levels: int) -> np.ndarray:
    """Normal scores, or integers from few levels: many ties."""
    scores = rng.integers(0, levels, shape) if levels else rng.normal(size=shape)
    return scores.astype(np.float32)


@st.composite
def class_case(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, classes = draw(st.integers(1, 60)), draw(st.integers(2, 9))
    scores = draw_scores(rng, (n, classes), draw(st.sampled_from([0, 2, 3])))
    return scores, rng.integers(0, classes, n)


@st.composite
def graded_case(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (draw(st.integers(1, 40)), draw(st.integers(2, 12)))
    scores = draw_scores(rng, shape, draw(st.sampled_from([0, 2, 4])))
    relevance = rng.integers(0, draw(st.integers(2, 4)), shape) * (rng.random(shape) < 0.5)
    return scores, relevance.astype(np.float32)


def reference_ap_at_k(scores: np.ndarray, relevance: np.ndarray, k: int | None) -> float:
    """The documented definition, one query at a time: an item's rank counts
    every item scoring at least as high."""
    values = []
    for s, r in zip(scores, relevance > 0, strict=True):
        cut = len(s) if k is None else k
        total = 0.0
        for i in np.flatnonzero(r):
            rank = int((s >= s[i]).sum())
            if rank <= cut:
                total += int((r & (s >= s[i])).sum()) / rank
        values.append(total / min(cut, r.sum()) if r.any() else 0.0)
    return float(np.mean(values))


def reference_rr_at_k(scores: np.ndarray, relevance: np.ndarray, k: int | None) -> float:
    values = []
    for s, r in zip(scores, relevance > 0, strict=True):
        rank = int((s >= s[r].max()).sum()) if r.any() else math.inf
        values.append(1 / rank if rank <= (k or len(s)) else 0.0)
    return float(np.mean(values))


@settings(max_examples=60, deadline=None)
@given(class_case(), st.sampled_from([None, 1, 2, 5]))
def test_class_targets_match_sklearn(case: Any, k: int | None) -> None:
    scores, targets = case
    one_hot = np.eye(scores.shape[1])[targets]
    assert feed(NDCG(k=k), scores, targets) == pytest.approx(ndcg_score(one_hot, scores, k=k), abs=1e-6)
    if k is None:
        expected = label_ranking_average_precision_score(one_hot, scores)
        assert feed(MRR(), scores, targets) == pytest.approx(expected, abs=1e-6)
        per_query = [average_precision_score(h, s) for h, s in zip(one_hot, scores, strict=True)]
        assert feed(MAP(), scores, targets) == pytest.approx(np.mean(per_query), abs=1e-6)
    expected = reference_ap_at_k(scores, one_hot, k)
    assert feed(MAP(k=k), scores, targets) == pytest.approx(expected, abs=1e-6)
    assert feed(MRR(k=k), scores, targets) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(graded_case(), st.sampled_from([None, 1, 3, 20]))
def test_graded_relevance_ndcg_matches_sklearn(case: Any, k: int | None) -> None:
    scores, relevance = case
    assert feed(NDCG(k=k), scores, relevance) == pytest.approx(ndcg_score(relevance, scores, k=k), abs=1e-6)
    exponential = ndcg_score(2**relevance - 1, scores, k=k)
    assert feed(NDCG(k=k, gain="exponential"), scores, relevance) == pytest.approx(exponential, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(graded_case(), st.sampled_from([None, 1, 3, 20]))
def test_graded_relevance_map_and_mrr(case: Any, k: int | None) -> None:
    scores, relevance = case
    if k is None:
        per_query = [
            average_precision_score(r > 0, s) if (r > 0).any() else 0.0
            for r, s in zip(relevance, scores, strict=True)
        ]
        assert feed(MAP(), scores, relevance) == pytest.approx(np.mean(per_query), abs=1e-6)
    assert feed(MAP(k=k), scores, relevance) == pytest.approx(reference_ap_at_k(scores, relevance, k), abs=1e-6)
    assert feed(MRR(k=k), scores, relevance) == pytest.approx(reference_rr_at_k(scores, relevance, k), abs=1e-6)


def test_map_at_k_without_ties_is_the_usual_apk() -> None:
    """Kaggle's apk: precision at each hit in the top k, over min(k, relevant)."""
    rng = np.random.default_rng(0)
    scores, relevance = rng.normal(size=(50, 15)).astype(np.float32), rng.random((50, 15)) < 0.3
    for k in (1, 3, 10):
        expected = []
        for s, r in zip(scores, relevance, strict=True):
            order = np.argsort(-s)[:k]
            hits = np.cumsum(r[order])
            precision = (hits / np.arange(1, len(order) + 1))[r[order]]
            expected.append(precision.sum() / min(k, r.sum()) if r.any() else 0.0)
        got = F.average_precision(torch.as_tensor(scores), torch.as_tensor(relevance), k).mean()
        assert got.item() == pytest.approx(np.mean(expected), abs=1e-9)


def test_single_relevant_item_mrr_is_lrap() -> None:
    rng = np.random.default_rng(1)
    scores = draw_scores(rng, (30, 8), 3)
    relevance = np.eye(8)[rng.integers(0, 8, 30)]
    expected = label_ranking_average_precision_score(relevance, scores)
    assert feed(MRR(), scores, relevance.astype(np.float32)) == pytest.approx(expected, abs=1e-9)


def test_constant_scores_never_look_good() -> None:
    scores, targets = torch.zeros(4, 10), torch.tensor([0, 3, 5, 9])
    assert F.reciprocal_rank(scores, targets).tolist() == [0.1] * 4
    assert F.average_precision(scores, targets, k=3).tolist() == [0.0] * 4


def test_queries_without_relevant_items_score_zero() -> None:
    scores, relevance = torch.randn(2, 5), torch.tensor([[0, 0, 0, 0, 0], [0, 1, 0, 0, 0]])
    for fn in (F.reciprocal_rank, F.average_precision, F.ndcg):
        assert fn(scores, relevance)[0].item() == 0.0


def test_nan_scores_give_nan_for_that_query() -> None:
    scores = torch.tensor([[0.1, float("nan"), 0.3], [0.1, 0.2, 0.3]])
    relevance = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]])
    for fn in (F.reciprocal_rank, F.average_precision, F.ndcg):
        values = fn(scores, relevance)
        assert math.isnan(values[0]) and not math.isnan(values[1])


def test_bad_inputs_are_clear_errors() -> None:
    for fn in (F.reciprocal_rank, F.average_precision, F.ndcg):  # -1 is padding, -2 a mistake
        with pytest.raises(ValueError, match=r"relevance grades must be >= 0 \(or -1 for padding\)"):
            fn(torch.randn(2, 3), torch.tensor([[0.0, -2.0, 1.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="targets must be class indices"):
        F.reciprocal_rank(torch.randn(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="k must be >= 1"):
        F.ndcg(torch.randn(2, 3), torch.tensor([0, 1]), k=0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0, 2, 5]))
def test_argsort_descending_and_tie_runs(seed: int, levels: int) -> None:
    rng = np.random.default_rng(seed)
    x = draw_scores(rng, (7, 9), levels)
    x[0, :4] = [np.inf, -np.inf, -0.0, 0.0]
    x[1, :2] = [1e-40, -1e-40]  # float32 denormals
    values, index = argsort_descending(torch.as_tensor(x))
    np.testing.assert_array_equal(values.numpy(), -np.sort(-x, axis=1))
    np.testing.assert_array_equal(np.take_along_axis(x, index.numpy(), 1), values.numpy())
    runs = tie_runs(values)
    first, last = (runs[0].numpy(), runs[1].numpy()) if runs else (np.arange(9),) * 2
    for row, f, la in zip(values.numpy(), np.broadcast_to(first, x.shape), np.broadcast_to(last, x.shape), strict=True):
        for p, v in enumerate(row):
            equal = np.flatnonzero(row == v)
            assert (f[p], la[p]) == (equal.min(), equal.max())


# -- padding: a ranking dataset pads each query to the longest with relevance -1 --


@st.composite
def padded_case(draw: Any) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Queries of 2..10 real items padded to a common width with relevance -1
    and wild scores (huge, -inf, NaN) on the padding."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lengths = [int(m) for m in rng.integers(2, 11, draw(st.integers(1, 20)))]
    width = max(lengths) + draw(st.integers(0, 3))
    scores = draw_scores(rng, (len(lengths), width), draw(st.sampled_from([0, 2, 4])))
    relevance = np.full((len(lengths), width), -1.0, dtype=np.float32)
    for q, m in enumerate(lengths):
        relevance[q, :m] = rng.integers(0, 4, m) * (rng.random(m) < 0.5)
        scores[q, m:] = rng.choice([1e30, -np.inf, np.nan, 5.0], width - m)
    return scores, relevance, lengths


@settings(max_examples=60, deadline=None)
@given(padded_case(), st.sampled_from([None, 1, 3, 10, 20]))
def test_padded_items_are_ignored_as_sklearn_on_the_real_items(case: Any, k: int | None) -> None:
    scores, relevance, lengths = case
    real = [(s[:m], r[:m]) for s, r, m in zip(scores, relevance, lengths, strict=True)]
    ndcg = np.mean([ndcg_score(r[None], s[None], k=k) for s, r in real])
    assert feed(NDCG(k=k), scores, relevance) == pytest.approx(ndcg, abs=1e-6)
    if k is None:
        ap = np.mean([average_precision_score(r > 0, s) if (r > 0).any() else 0.0 for s, r in real])
        assert feed(MAP(), scores, relevance) == pytest.approx(ap, abs=1e-6)
    ap_at_k = np.mean([reference_ap_at_k(s[None], r[None], k) for s, r in real])
    assert feed(MAP(k=k), scores, relevance) == pytest.approx(ap_at_k, abs=1e-6)
    rr_at_k = np.mean([reference_rr_at_k(s[None], r[None], k) for s, r in real])
    assert feed(MRR(k=k), scores, relevance) == pytest.approx(rr_at_k, abs=1e-6)


def test_padding_changes_nothing() -> None:
    """The same queries, unpadded one by one and padded together, score alike;
    a query of one item and a query with no relevant item included."""
    rng = np.random.default_rng(3)
    lengths = [1, 4, 7, 3]
    queries = [(rng.normal(size=m).astype(np.float32), rng.integers(0, 3, m).astype(np.float32)) for m in lengths]
    queries[2][1][:] = 0  # no relevant item: scores 0
    width = 9
    scores = np.full((len(lengths), width), np.nan, dtype=np.float32)
    relevance = np.full((len(lengths), width), -1.0, dtype=np.float32)
    for q, (s, r) in enumerate(queries):
        scores[q, : len(s)], relevance[q, : len(r)] = s, r
    for fn in (F.reciprocal_rank, F.average_precision, F.ndcg):
        for k in (None, 2, 5):
            padded = fn(torch.as_tensor(scores), torch.as_tensor(relevance), k)
            alone = torch.cat([fn(torch.as_tensor(s)[None], torch.as_tensor(r)[None], k) for s, r in queries])
            torch.testing.assert_close(padded, alone)
            assert padded[2].item() == 0.0
    for metric in (NDCG(k=10), MAP(k=10), MRR()):
        value = feed(metric, scores, relevance)
        assert math.isfinite(value)  # NaN scores on padding are not NaN outputs
