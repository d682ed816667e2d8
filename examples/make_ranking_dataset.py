"""Generate a small synthetic learning-to-rank dataset for ``ranking_csv``.

Each query has 5 to 30 candidate items with 8 features drawn from a normal
distribution. An item's relevance grade (0 to 3) is a noisy function of its
features: a linear score, an interaction of the first two features, a
per-query offset (some queries have many good items, some none) and noise,
cut at fixed thresholds. A model that scores items from their features can
learn most of it; the noise keeps NDCG below 1.

Written under ``--out``::

    train.csv   query_id,item_id,f0..f7,relevance   80 % of the queries
    test.csv    query_id,item_id,f0..f7             the other queries, to rank

Rows are grouped by query, items in random order; ids are ``q0001`` and
``d000001`` style. The same ``--seed`` gives the same files.

Run::

    python examples/make_ranking_dataset.py --out data/ranking --queries 300
    torchyard run examples/ranking.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

N_FEATURES = 8
#: Relevance grade g when the latent score is at least THRESHOLDS[g - 1].
THRESHOLDS = (0.8, 1.8, 2.8)


def make(queries: int = 300, min_items: int = 5, max_items: int = 30, seed: int = 0,
         test_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (train, test) tables; test has no relevance column."""
    rng = np.random.default_rng(seed)
    weights = np.array([1.0, -0.8, 0.6, 0.5, -0.4, 0.3, 0.0, 0.0])  # f6, f7: noise features
    frames = []
    item = 0
    for q in range(queries):
        m = int(rng.integers(min_items, max_items + 1))
        x = rng.normal(size=(m, N_FEATURES))
        latent = x @ weights + 0.7 * x[:, 0] * x[:, 1] + rng.normal(0, 0.6) + rng.normal(0, 0.5, m)
        frame = pd.DataFrame(x.round(4), columns=[f"f{i}" for i in range(N_FEATURES)])
        frame.insert(0, "item_id", [f"d{item + i:06d}" for i in range(m)])
        frame.insert(0, "query_id", f"q{q:04d}")
        frame["relevance"] = np.digitize(latent, THRESHOLDS)
        frames.append(frame)
        item += m
    order = rng.permutation(queries)
    n_test = round(queries * test_fraction)
    test_queries = {f"q{q:04d}" for q in order[:n_test]}
    table = pd.concat(frames, ignore_index=True)
    is_test = table["query_id"].isin(test_queries)
    return table[~is_test].reset_index(drop=True), table[is_test].drop(columns="relevance").reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/ranking"), help="output folder")
    parser.add_argument("--queries", type=int, default=300, help="number of queries (train and test)")
    parser.add_argument("--min-items", type=int, default=5, help="fewest items of a query")
    parser.add_argument("--max-items", type=int, default=30, help="most items of a query")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    train, test = make(args.queries, args.min_items, args.max_items, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train.to_csv(args.out / "train.csv", index=False)
    test.to_csv(args.out / "test.csv", index=False)
    print(f"{args.out}: train.csv {train['query_id'].nunique()} queries, {len(train)} rows; "
          f"test.csv {test['query_id'].nunique()} queries, {len(test)} rows")


if __name__ == "__main__":
    main()
