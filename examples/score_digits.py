"""Score digits runs on the held-out test part, whose labels scikit-learn has.

The ``digits`` dataset holds out ``test_fraction`` of the images as the
"unlabelled" test split a run predicts into ``submission.csv``; its ids are
the images' indices in ``sklearn.datasets.load_digits()``, so the true labels
are at hand. For each run directory this prints the best validation value
(``summary.json``) and the test accuracy and macro F1 of ``submission.csv``:

    python examples/score_digits.py runs/digits/<stamp> runs/tune/digits-digits_sweep/trial_0003
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, f1_score


def score(run_dir: Path) -> dict[str, float | str]:
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "submission.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    target = load_digits().target
    truth = [int(target[int(r["id"])]) for r in rows]
    predicted = [int(r["label"]) for r in rows]
    return {
        "run": str(run_dir),
        summary["monitor"]: summary["best_value"],
        "test/accuracy": accuracy_score(truth, predicted),
        "test/f1_macro": f1_score(truth, predicted, average="macro"),
        "test_images": len(rows),
    }


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    for arg in argv:
        result = score(Path(arg))
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
