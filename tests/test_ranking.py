"""Learning to rank end to end: ranking_csv, the ranking losses, ranking_mlp,
the ranking_topk writer and examples/ranking.yaml through the CLI.

The metrics (ndcg, mrr, map) and their padding are checked against
scikit-learn in tests/test_metrics_ranking.py.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from torchyard.data import Predictions
from torchyard.errors import DataError
from torchyard.plugins import PluginHost
from torchyard_builtins.datasets.ranking import ranking_csv
from torchyard_builtins.losses.ranking import LambdaRankLoss, ListNetLoss, RankNetLoss
from torchyard_builtins.models.ranking import RankingMLP
from torchyard_builtins.writers.ranking import RankingTopKWriter, top_items

from .conftest import EXAMPLES

TRAIN = """query_id,item_id,f0,f1,relevance
qa,a1,1.0,0.5,2
qb,b1,0.1,0.2,0
qa,a2,2.0,1.5,0
qc,c1,3.0,3.5,1
qa,a3,0.5,0.25,1
qb,b2,0.3,0.4,1
"""
TEST = """query_id,item_id,f0,f1
qx,x1,1.0,1.0
qy,y1,2.0,2.0
qy,y2,3.0,3.0
qx,x2,4.0,4.0
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the dataset ---------------------------------------------------------------


def test_rows_are_grouped_by_query_and_padded(tmp_path: Path) -> None:
    bundle = ranking_csv(write(tmp_path, "train.csv", TRAIN), test=write(tmp_path, "test.csv", TEST))
    assert bundle.task == "ranking" and bundle.val is None
    assert bundle.input_shape == (3, 2) and bundle.num_classes is None
    assert bundle.train_targets is None and bundle.groups is None
    x, y = bundle.train.tensors  # type: ignore[attr-defined]
    assert x.dtype == y.dtype == torch.float32 and x.shape == (3, 3, 2)
    # queries in order of first appearance, items in file order, -1 and zeros as padding
    torch.testing.assert_close(y, torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, -1.0], [1.0, -1.0, -1.0]]))
    torch.testing.assert_close(x[0], torch.tensor([[1.0, 0.5], [2.0, 1.5], [0.5, 0.25]]))
    torch.testing.assert_close(x[2, 1:], torch.zeros(2, 2))
    assert bundle.test_ids == ["qx", "qy"]
    assert bundle.test_meta == {"item_ids": [["x1", "x2"], ["y1", "y2"]]}
    (test_x,) = bundle.test.tensors  # type: ignore[union-attr]
    assert test_x.shape == (2, 3, 2)  # padded to the longest query of both files
    torch.testing.assert_close(test_x[0, :2], torch.tensor([[1.0, 1.0], [4.0, 4.0]]))


def test_padding_reaches_the_longest_test_query(tmp_path: Path) -> None:
    long_test = "query_id,item_id,f0,f1\n" + "".join(f"qz,z{i},{i},0\n" for i in range(5))
    bundle = ranking_csv(write(tmp_path, "train.csv", TRAIN), test=write(tmp_path, "test.csv", long_test))
    assert bundle.input_shape == (5, 2)
    assert bundle.train.tensors[1].shape == (3, 5)  # type: ignore[attr-defined]


def test_features_and_items_can_be_chosen(tmp_path: Path) -> None:
    bundle = ranking_csv(write(tmp_path, "train.csv", TRAIN), feature_columns=["f1"], item_column=None,
                         test=write(tmp_path, "test.csv", TEST))  # fmt: skip
    assert bundle.input_shape == (3, 1)
    assert bundle.test_meta["item_ids"] == [[0, 1], [0, 1]]  # numbered within the query


def test_parquet_is_read_too(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "train.parquet"
    pd.read_csv(write(tmp_path, "train.csv", TRAIN)).to_parquet(path)
    bundle = ranking_csv(path)
    assert bundle.input_shape == (3, 2)
    assert bundle.train.tensors[1][0].tolist() == [2.0, 0.0, 1.0]  # type: ignore[attr-defined]


def test_max_items_truncates_with_one_warning(tmp_path: Path) -> None:
    long_test = "query_id,item_id,f0,f1\n" + "".join(f"qz,z{i},{i},0\n" for i in range(4))
    with pytest.warns(UserWarning) as caught:
        bundle = ranking_csv(write(tmp_path, "train.csv", TRAIN), test=write(tmp_path, "test.csv", long_test),
                             max_items=2)  # fmt: skip
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "max_items=2 dropped 1 items of 1 queries in" in message and "train.csv" in message
    assert "2 items of 1 queries in" in message and "test.csv" in message
    assert bundle.input_shape == (2, 2)
    assert bundle.train.tensors[1][0].tolist() == [2.0, 0.0]  # type: ignore[attr-defined]
    assert bundle.test_meta["item_ids"] == [["z0", "z1"]]


def test_max_items_above_every_query_warns_nothing(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bundle = ranking_csv(write(tmp_path, "train.csv", TRAIN), max_items=3)
    assert bundle.input_shape == (3, 2)


@pytest.mark.parametrize(
    ("text", "test", "expected"),
    [
        (TRAIN.replace("qc,c1,3.0,3.5,1", "qc,c1,3.0,3.5,high"), None,
         "train.csv, row 4 (line 5), column 'relevance': expected a number, got 'high'"),
        (TRAIN.replace("qb,b1,0.1,", "qb,b1,,"), None,
         "train.csv, row 2 (line 3), column 'f0': expected a number, got ''"),
        (TRAIN.replace("qa,a3,0.5,0.25,1", "qa,a3,0.5,0.25,-1"), None,
         "train.csv, row 5 (line 6), column 'relevance': expected a relevance grade >= 0, got '-1'"),
        (TRAIN.replace("qb,b2", "qb,b1"), None, "train.csv, row 6 (line 7): item 'b1' is listed twice in query 'qb'"),
        (TRAIN.replace("qc,c1", ",c1"), None, "train.csv, row 4 (line 5), column 'query_id': the query id is empty"),
        (TRAIN.replace("query_id,", "query,"), None, "train.csv has no column 'query_id'; did you mean 'query'?"),
        (TRAIN, TEST.replace("qy", "qb"), "query id 'qb' is in both"),
        (TRAIN, TEST.replace(",f1\n", ",g1\n"), "test.csv has no feature column 'f1'"),
        ("query_id,item_id,f0,relevance\n", None, "train.csv has no rows"),
        ("query_id,item_id,relevance\nq,a,1\n", None, "has no feature columns besides 'query_id', 'item_id', 'relevance'"),
    ],
    ids=["relevance-not-a-number", "blank-feature", "negative-grade", "item-twice", "empty-query-id",
         "missing-query-column", "query-in-both-files", "test-lacks-a-feature", "no-rows", "no-features"],
)  # fmt: skip
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, test: str | None, expected: str) -> None:
    train = write(tmp_path, "train.csv", text)
    with pytest.raises(DataError) as error:
        ranking_csv(train, test=write(tmp_path, "test.csv", test) if test else None)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ranking file not found: .*nope.csv"):
        ranking_csv(tmp_path / "nope.csv")


# -- the losses ----------------------------------------------------------------

SCORES = torch.tensor([[0.5, 1.0, 3.0, 7.0], [2.0, -1.0, 0.0, 0.0]])
RELEVANCE = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 1.0, -1.0, -1.0]])


def test_listnet_by_hand() -> None:
    def query(s: list[float], r: list[float], t: float = 1.0) -> float:
        p = np.exp(np.array(r) / t) / np.exp(np.array(r) / t).sum()
        log_q = np.array(s) - np.log(np.exp(s).sum())
        return float(-(p * log_q).sum())

    expected = (query([0.5, 1.0, 3.0], [2, 1, 0]) + query([2.0, -1.0], [0, 1])) / 2
    assert ListNetLoss()(SCORES, RELEVANCE).item() == pytest.approx(expected, rel=1e-6)
    cooler = (query([0.5, 1.0, 3.0], [2, 1, 0], 0.5) + query([2.0, -1.0], [0, 1], 0.5)) / 2
    assert ListNetLoss(temperature=0.5)(SCORES, RELEVANCE).item() == pytest.approx(cooler, rel=1e-6)


def test_ranknet_by_hand() -> None:
    def pair(better: float, worse: float) -> float:
        return math.log1p(math.exp(-(better - worse)))

    # query 1: (a>b), (a>c), (b>c); query 2: (y>x)
    pairs = [pair(0.5, 1.0), pair(0.5, 3.0), pair(1.0, 3.0), pair(-1.0, 2.0)]
    assert RankNetLoss()(SCORES, RELEVANCE).item() == pytest.approx(np.mean(pairs), rel=1e-6)
    steep = [math.log1p(math.exp(-2 * (b - w))) for b, w in ((0.5, 1.0), (0.5, 3.0), (1.0, 3.0), (-1.0, 2.0))]
    assert RankNetLoss(sigma=2.0)(SCORES, RELEVANCE).item() == pytest.approx(np.mean(steep), rel=1e-6)


def test_lambdarank_by_hand() -> None:
    def pair(better: float, worse: float) -> float:
        return math.log1p(math.exp(-(better - worse)))

    d = [1 / math.log2(r + 1) for r in (1, 2, 3)]
    # query 1 ranked by score: c (rank 1), b (2), a (3); gains 2^r - 1: a 3, b 1, c 0
    ideal = 3 * d[0] + 1 * d[1]
    q1 = (abs(3 - 1) * abs(d[2] - d[1]) * pair(0.5, 1.0) + abs(3 - 0) * abs(d[2] - d[0]) * pair(0.5, 3.0)
          + abs(1 - 0) * abs(d[1] - d[0]) * pair(1.0, 3.0)) / ideal  # fmt: skip
    # query 2: x (rank 1), y (2); gains x 0, y 1
    q2 = abs(1 - 0) * abs(d[1] - d[0]) * pair(-1.0, 2.0) / d[0]
    assert LambdaRankLoss()(SCORES, RELEVANCE).item() == pytest.approx((q1 + q2) / 2, rel=1e-6)
    # at k=1 only swaps into or out of the top position count
    q1_top = (abs(3 - 0) * d[0] * pair(0.5, 3.0) + abs(1 - 0) * d[0] * pair(1.0, 3.0)) / (3 * d[0])
    q2_top = d[0] * pair(-1.0, 2.0) / d[0]
    assert LambdaRankLoss(k=1)(SCORES, RELEVANCE).item() == pytest.approx((q1_top + q2_top) / 2, rel=1e-6)


LOSSES = [ListNetLoss(), RankNetLoss(), LambdaRankLoss(), LambdaRankLoss(k=2, gain="linear")]


@pytest.mark.parametrize("loss_fn", LOSSES, ids=lambda f: type(f).__name__)
def test_padding_changes_nothing_and_gets_no_gradient(loss_fn: Any) -> None:
    wider = torch.cat([SCORES, torch.tensor([[float("nan"), 1e30], [float("inf"), -5.0]])], dim=1)
    wider.requires_grad_(True)
    padded = torch.cat([RELEVANCE, torch.full((2, 2), -1.0)], dim=1)
    scores = SCORES.clone().requires_grad_(True)
    loss, wide_loss = loss_fn(scores, RELEVANCE), loss_fn(wider, padded)
    assert wide_loss.item() == pytest.approx(loss.item(), rel=1e-6)
    (loss + wide_loss).backward()
    assert wider.grad is not None and scores.grad is not None
    torch.testing.assert_close(wider.grad[:, :4], scores.grad)
    assert (wider.grad[padded == -1] == 0).all()


DEGENERATE = {
    "no-relevant-item": [[0.0, 0.0, 0.0, -1.0]],
    "single-item": [[2.0, -1.0, -1.0, -1.0]],
    "all-padding": [[-1.0, -1.0, -1.0, -1.0]],
    # no pair to order (listnet still pulls equally relevant items to equal scores)
    "one-grade-throughout": [[1.0, 1.0, 1.0, 1.0]],
}


@pytest.mark.parametrize(
    ("loss_fn", "relevance"),
    [
        pytest.param(loss_fn, relevance, id=f"{type(loss_fn).__name__}-{name}")
        for loss_fn in LOSSES
        for name, relevance in DEGENERATE.items()
        if not (name == "one-grade-throughout" and isinstance(loss_fn, ListNetLoss))
    ],
)
def test_degenerate_queries_give_zero_and_finite_gradients(loss_fn: Any, relevance: list[list[float]]) -> None:
    scores = torch.tensor([[0.3, -2.0, 5.0, 1.0]], requires_grad=True)
    loss = loss_fn(scores, torch.tensor(relevance))
    loss.backward()
    assert loss.ndim == 0 and loss.item() == 0.0
    assert scores.grad is not None and torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("loss_fn", LOSSES, ids=lambda f: type(f).__name__)
def test_losses_train_towards_the_relevance_order(loss_fn: Any) -> None:
    scores = torch.zeros(1, 4, requires_grad=True)
    relevance = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    optimizer = torch.optim.SGD([scores], lr=0.5)
    for _ in range(200):
        optimizer.zero_grad()
        loss_fn(scores, relevance).backward()
        optimizer.step()
    assert scores.detach().argsort(descending=True).tolist() == [[1, 3, 2, 0]]


def test_losses_refuse_bad_shapes_and_grades() -> None:
    for loss_fn in LOSSES:
        with pytest.raises(ValueError, match=r"expected scores and relevance grades of one shape"):
            loss_fn(torch.zeros(2, 4), torch.zeros(2, 3))
        with pytest.raises(ValueError, match=r"relevance grades must be >= 0 \(or -1 for padding\)"):
            loss_fn(torch.zeros(1, 3), torch.tensor([[1.0, -2.0, 0.0]]))
    assert RankNetLoss()(torch.zeros(2, 4, 1), torch.zeros(2, 4)).item() == 0.0  # (q, m, 1) squeezed


# -- the model -----------------------------------------------------------------


def test_ranking_mlp_scores_every_item_alike() -> None:
    model = RankingMLP(input_shape=[5, 3], hidden=[8]).eval()
    x = torch.randn(2, 5, 3)
    scores = model(x)
    assert scores.shape == (2, 5)
    # each item's score depends only on its own features
    torch.testing.assert_close(model(x[:, [4, 0, 1, 2, 3]]), scores[:, [4, 0, 1, 2, 3]])
    with pytest.raises(ValueError, match="input_shape must be given"):
        RankingMLP()
    with pytest.raises(ValueError, match=r"input_shape must be \(items, features\)"):
        RankingMLP(input_shape=[5])


# -- the writer ----------------------------------------------------------------


def test_writer_lists_each_querys_top_items(tmp_path: Path) -> None:
    predictions = Predictions(
        ids=["qx", "qy"],
        outputs=np.array([[0.1, 0.9, 0.5, 7.0], [0.3, 0.3, 9.0, 9.0]], dtype=np.float32),
        task="ranking",
        kind="values",
        meta={"item_ids": [["x1", "x2", "x3"], ["y1", "y2"]]},
    )
    path = RankingTopKWriter(k=2).write(predictions, tmp_path)
    assert path == tmp_path / "submission.csv"
    frame = pd.read_csv(path, dtype=str)
    assert list(frame.columns) == ["query_id", "item_ids"]
    # padding (7.0, 9.0) never ranked; ties keep file order
    assert frame.values.tolist() == [["qx", "x2 x3"], ["qy", "y1 y2"]]
    custom = RankingTopKWriter(k=None, filename="ranked.csv", query_column="QueryId", items_column="DocIds",
                               separator=";").write(predictions, tmp_path)  # fmt: skip
    assert pd.read_csv(custom, dtype=str).values.tolist() == [["qx", "x2;x3;x1"], ["qy", "y1;y2"]]


def test_writer_without_item_ids_numbers_the_items() -> None:
    predictions = Predictions(ids=[0], outputs=np.array([[0.2, 0.8, 0.5]]), kind="values")
    assert top_items(predictions, 2) == [[1, 2]]


def test_writer_refuses_item_ids_that_do_not_fit() -> None:
    predictions = Predictions(ids=["q"], outputs=np.zeros((1, 2)), kind="values", meta={"item_ids": [[1, 2, 3]]})
    with pytest.raises(DataError, match="query 'q' has 3 items but only 2 scores"):
        top_items(predictions)
    with pytest.raises(ValueError, match="must differ"):
        RankingTopKWriter(query_column="x", items_column="x")


# -- the components pass the conformance kit -------------------------------------


def test_the_ranking_components_pass_the_kit(tmp_path: Path, builtin_host: PluginHost) -> None:
    from torchyard.testing import check_component

    registry = builtin_host.registry
    train, test = write(tmp_path, "train.csv", TRAIN), write(tmp_path, "test.csv", TEST)
    check_component(registry.get("dataset", "ranking_csv"), {"train": str(train), "test": str(test)})
    for kind, name in (("loss", "listnet"), ("loss", "ranknet"), ("loss", "lambdarank"),
                       ("model", "ranking_mlp"), ("writer", "ranking_topk")):  # fmt: skip
        record = registry.get(kind, name)
        check_component(record)
        if kind != "model":
            assert record.tasks == ("ranking",)


# -- the example, end to end -----------------------------------------------------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_ranking_dataset", EXAMPLES / "make_ranking_dataset.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generator_is_seeded_and_keeps_queries_apart() -> None:
    train, test = _generator().make(queries=20, seed=3)
    again, _ = _generator().make(queries=20, seed=3)
    pd.testing.assert_frame_equal(train, again)
    assert train["query_id"].nunique() == 16 and test["query_id"].nunique() == 4
    assert not set(train["query_id"]) & set(test["query_id"])
    assert "relevance" not in test.columns and set(train["relevance"]) <= {0, 1, 2, 3}
    assert train.groupby("query_id").size().between(5, 30).all()


@pytest.mark.slow
def test_the_example_trains_predicts_and_writes(cli: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _generator().main(["--out", str(data), "--queries", "40", "--max-items", "12", "--seed", "1"])
    config = yaml.safe_load((EXAMPLES / "ranking.yaml").read_text())
    config["data"].update(train=str(data / "train.csv"), test=str(data / "test.csv"))
    config["trainer"].update(max_epochs=2, progress=False)
    config["loader"]["batch_size"] = 8
    path = tmp_path / "ranking.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"

    result = cli("run", path, "--out", out)
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(out / "metrics.csv")
    for key in ("val/ndcg", "val/mrr", "val/map"):
        assert metrics[key].between(0, 1).all(), metrics
    test = pd.read_csv(data / "test.csv", dtype=str)
    items = test.groupby("query_id", sort=False)["item_id"].apply(list)

    def check(submission: pd.DataFrame) -> None:
        assert list(submission.columns) == ["query_id", "item_ids"]
        assert list(submission["query_id"]) == list(items.index)  # every test query, in file order
        for query, ranked in zip(submission["query_id"], submission["item_ids"], strict=True):
            ids = ranked.split(" ")
            assert len(ids) == min(10, len(items[query])) and len(set(ids)) == len(ids)
            assert set(ids) <= set(items[query])  # the query's own items, never padding

    submission = pd.read_csv(out / "submission.csv", dtype=str)
    check(submission)

    again = tmp_path / "predicted"
    result = cli("predict", path, "--checkpoint", out, "--out", again)
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(again / "submission.csv", dtype=str)
    check(predicted)
    pd.testing.assert_frame_equal(predicted, submission)
