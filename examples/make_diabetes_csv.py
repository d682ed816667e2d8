"""Write scikit-learn's bundled diabetes data as a competition-style table.

442 patients, 10 baseline measurements, and the target: a measure of disease
progression one year later (25..346). Nothing is downloaded: the data ships
with scikit-learn. Written under ``--out``::

    train.csv   id,age,sex,age_band,bmi,bp,s1,...,s6,target   (the labelled rows)
    test.csv    id,age,sex,age_band,bmi,bp,s1,...,s6           (rows to predict)
    test_targets.csv   id,target   (the test rows' answers, for scoring a submission)

To look like real tables, ``sex`` is written as ``F``/``M`` (scikit-learn's
1 and 2; which is which is not documented), ``age_band`` adds a text column
(``<30``, ``30-39``, ..., ``60+``), and about 3% of ``bp`` and ``s3`` are
left blank (missing). Run::

    python examples/make_diabetes_csv.py --out data/diabetes
    torchyard run examples/diabetes.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ("age", "sex", "age_band", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def age_band(age: float) -> str:
    """Decade of life: <30, 30-39, 40-49, 50-59, 60+."""
    if age < 30:
        return "<30"
    if age >= 60:
        return "60+"
    low = int(age // 10) * 10
    return f"{low}-{low + 9}"


def diabetes_frame(missing: float = 0.03, seed: int = 0) -> pd.DataFrame:
    """The 442 rows with an ``id``, the features above and ``target``."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    frame = pd.DataFrame(bunch.data, columns=bunch.feature_names)
    frame["sex"] = frame["sex"].map({1.0: "F", 2.0: "M"})
    frame["age"] = frame["age"].astype(int)
    frame["age_band"] = frame["age"].map(age_band)
    rng = np.random.default_rng(seed)
    for column in ("bp", "s3"):
        frame.loc[rng.random(len(frame)) < missing, column] = np.nan
    frame.insert(0, "id", [f"p{i:03d}" for i in range(len(frame))])
    frame["target"] = bunch.target
    return frame[["id", *FEATURES, "target"]]


def write(out: Path, test_fraction: float = 0.2, seed: int = 0) -> None:
    """Write train.csv, test.csv and test_targets.csv under ``out``."""
    frame = diabetes_frame(seed=seed)
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(frame), dtype=bool)
    is_test[rng.permutation(len(frame))[: round(test_fraction * len(frame))]] = True
    out.mkdir(parents=True, exist_ok=True)
    frame[~is_test].to_csv(out / "train.csv", index=False)
    frame[is_test].drop(columns="target").to_csv(out / "test.csv", index=False)
    frame.loc[is_test, ["id", "target"]].to_csv(out / "test_targets.csv", index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/diabetes"), help="output folder")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of rows in test.csv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test rows and the blanks")
    args = parser.parse_args()
    write(args.out, args.test_fraction, args.seed)
    print(f"wrote {args.out}/train.csv, test.csv and test_targets.csv")


if __name__ == "__main__":
    main()
