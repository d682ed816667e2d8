"""Speed of the metrics that sort -- ROC-AUC and ranking -- against scikit-learn.

Targets (issue 3):

* one-vs-rest macro ROC-AUC on 1,000,000 samples x 18 classes at least 5x
  faster than ``sklearn.metrics.roc_auc_score`` on the same machine and the
  same values (the issue measured sklearn 6.8 s, torchmetrics 3.6 s);
* NDCG@k, MRR and MAP@k on 8,000 queries x 40 items in at most 20 ms each.

Every case also checks its value against scikit-learn (or, where sklearn
has no such metric, a plain numpy reference) and reports the difference;
MAP over all items is checked per query with ``average_precision_score``
on the first 500 queries (sklearn has no batched form to time). MAP@k has
no reference here (the tests check it against a per-query loop).
torchyard times are the best of ``--runs`` after a warm-up, as a metric is
used: ``update`` with the whole data, then ``compute``. scikit-learn gets
the same values (float32 probabilities, handed over as float64 so that it
neither converts nor sums in float32), timed once. ``--device cuda`` runs
the metrics on a GPU and first checks that every registered metric gives
there what it gives on the CPU. The machine's load average is printed: on
a shared machine, rerun when it is high.

Run it by hand (it is not a test)::

    .venv/bin/python benchmarks/metrics_speed.py
    .venv/bin/python benchmarks/metrics_speed.py --samples 200000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn import metrics as skm

from torchyard_builtins.metrics.auc import ROCAUC, BinaryROCAUC
from torchyard_builtins.metrics.functional import average_precision
from torchyard_builtins.metrics.ranking import MAP, MRR, NDCG

RANKING_TARGET_MS = 20.0
AUC_TARGET_SPEEDUP = 5.0


@dataclass
class Row:
    case: str
    ours_s: float
    reference_s: float | None
    difference: float
    target: str

    def verdict(self) -> str:
        if self.target.startswith("<="):
            return "ok" if self.ours_s * 1e3 <= RANKING_TARGET_MS else "SLOW"
        if self.target.startswith(">=") and self.reference_s is not None:
            return "ok" if self.reference_s / self.ours_s >= AUC_TARGET_SPEEDUP else "SLOW"
        return ""


def best_of(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Best wall time of ``runs`` calls after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


DEVICE = torch.device("cpu")


def metric_value(make: Callable[[], Any], outputs: torch.Tensor, targets: torch.Tensor) -> Callable[[], float]:
    """A fresh metric on DEVICE, one update with everything, compute (which syncs)."""
    outputs, targets = outputs.to(DEVICE), targets.to(DEVICE)

    def run() -> float:
        metric = make().to(DEVICE)
        metric.update(outputs, targets)
        return float(metric.compute())

    return run


def device_agreement() -> list[str]:
    """Every registered metric gives on DEVICE what it gives on the CPU."""
    from torchyard.plugins import PluginHost

    host = PluginHost()
    host.load_entrypoints()
    g = torch.Generator().manual_seed(2)
    inputs = {
        "classes": (torch.randn(5000, 7, generator=g), torch.randint(0, 7, (5000,), generator=g)),
        "binary": (torch.randn(5000, 1, generator=g), torch.randint(0, 2, (5000,), generator=g).float()),
        "values": (torch.randn(5000, 1, generator=g), torch.randn(5000, generator=g)),
        "ranking": (torch.randint(0, 5, (500, 30), generator=g).float(),
                    torch.randint(0, 4, (500, 30), generator=g).float()),
    }
    lines = []
    for record in host.registry.records("metric"):
        outputs, targets = inputs[record.targets]
        values = []
        for device in (torch.device("cpu"), DEVICE):
            metric = record.build(**dict(record.params())).to(device)
            for o, t in zip(outputs.split(999), targets.split(999), strict=True):
                metric.update(o.to(device), t.to(device))
            values.append(float(metric.compute()))
        ok = abs(values[0] - values[1]) <= 1e-6 * max(1.0, abs(values[0]))
        lines.append(f"{'ok  ' if ok else 'FAIL'} {record.name:18} cpu {values[0]:.9f}  {DEVICE} {values[1]:.9f}")
    return lines


def auc_rows(samples: int, classes: int, ovo_samples: int, runs: int) -> list[Row]:
    g = torch.Generator().manual_seed(0)
    # informative scores, so the AUC is far from 0.5 and mistakes would show
    targets = torch.randint(0, classes, (samples,), generator=g)
    logits = torch.randn(samples, classes, generator=g)
    logits[torch.arange(samples), targets] += 1.0
    probs = logits.softmax(dim=-1)
    # float64 copies (the same values) spare sklearn a conversion and any float32 sums
    y, p = targets.numpy(), probs.numpy().astype(np.float64)
    rows = []

    start = time.perf_counter()
    expected = skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    sklearn_s = time.perf_counter() - start
    seconds, value = best_of(metric_value(lambda: ROCAUC(outputs="probabilities"), probs, targets), runs)
    rows.append(Row(f"roc_auc ovr macro {samples:,} x {classes}", seconds, sklearn_s,
                    abs(value - expected), f">= {AUC_TARGET_SPEEDUP:g}x sklearn"))
    seconds, value = best_of(metric_value(ROCAUC, logits, targets), runs)
    rows.append(Row("  same, from logits (+ softmax)", seconds, sklearn_s, abs(value - expected), ""))

    start = time.perf_counter()
    expected = skm.roc_auc_score(y == 0, p[:, 0])
    sklearn_s = time.perf_counter() - start
    seconds, value = best_of(metric_value(BinaryROCAUC, probs[:, 0], (targets == 0).float()), runs)
    rows.append(Row(f"binary_roc_auc {samples:,}", seconds, sklearn_s, abs(value - expected), ""))

    small_p, small_y = probs[:ovo_samples], targets[:ovo_samples]
    start = time.perf_counter()
    expected = skm.roc_auc_score(small_y.numpy(), p[:ovo_samples], multi_class="ovo")
    sklearn_s = time.perf_counter() - start
    make = lambda: ROCAUC(multi_class="ovo", outputs="probabilities")  # noqa: E731
    seconds, value = best_of(metric_value(make, small_p, small_y), runs)
    rows.append(Row(f"roc_auc ovo macro {ovo_samples:,} x {classes}", seconds, sklearn_s,
                    abs(value - expected), ""))
    return rows


def reference_rr(scores: np.ndarray, relevance: np.ndarray) -> float:
    """MRR in numpy: 1 / (items scoring at least as high as the best relevant one)."""
    relevant = relevance > 0
    best = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)
    rank = (scores >= best).sum(axis=1)
    return float(np.where(relevant.any(axis=1), 1.0 / rank, 0.0).mean())


def ranking_rows(queries: int, items: int, k: int, runs: int) -> list[Row]:
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(queries, items, generator=g)
    relevance = torch.randint(0, 4, (queries, items), generator=g).float()
    relevance *= torch.rand(queries, items, generator=g) < 0.3
    classes = torch.randint(0, items, (queries,), generator=g)
    s, r = scores.numpy().astype(np.float64), relevance.numpy().astype(np.float64)
    one_hot = np.eye(items)[classes.numpy()]
    target = f"<= {RANKING_TARGET_MS:g} ms"

    def ap_difference(subset: int = 500) -> float:
        """sklearn has no batched AP: compare per query on the first queries."""
        expected = np.mean([
            skm.average_precision_score(row > 0, sc) if (row > 0).any() else 0.0
            for row, sc in zip(r[:subset], s[:subset], strict=True)
        ])
        got = average_precision(scores[:subset], relevance[:subset]).mean().item()
        return abs(got - float(expected))

    cases: list[tuple[str, Callable[[], Any], torch.Tensor, Callable[[], float] | None]] = [
        (f"ndcg@{k} graded", lambda: NDCG(k=k), relevance, lambda: skm.ndcg_score(r, s, k=k)),
        ("mrr graded", MRR, relevance, None),
        (f"map@{k} graded", lambda: MAP(k=k), relevance, None),
        ("map graded (all items)", MAP, relevance, None),
        (f"ndcg@{k} class targets", lambda: NDCG(k=k), classes, lambda: skm.ndcg_score(one_hot, s, k=k)),
        ("mrr class targets", MRR, classes,
         lambda: skm.label_ranking_average_precision_score(one_hot, s)),
        (f"map@{k} class targets", lambda: MAP(k=k), classes, None),
    ]
    rows = []
    for name, make, targets, reference in cases:
        seconds, value = best_of(metric_value(make, scores, targets), runs)
        reference_s, difference = None, float("nan")
        if reference is not None:
            start = time.perf_counter()
            expected = reference()
            reference_s = time.perf_counter() - start
            difference = abs(value - expected)
        elif name.startswith("mrr graded"):
            difference = abs(value - reference_rr(s, r))
        elif name.startswith("map graded"):
            difference = ap_difference()
        rows.append(Row(f"{name} {queries:,} x {items}", seconds, reference_s, difference, target))
    return rows


def print_table(rows: list[Row]) -> None:
    print(f"{'case':44} {'torchyard':>11} {'sklearn':>11} {'speedup':>8} {'|diff|':>9}  target")
    for row in rows:
        ref = f"{row.reference_s * 1e3:9.1f}ms" if row.reference_s is not None else f"{'-':>11}"
        speed = f"{row.reference_s / row.ours_s:7.1f}x" if row.reference_s is not None else f"{'-':>8}"
        diff = f"{row.difference:9.1e}" if row.difference == row.difference else f"{'-':>9}"
        print(f"{row.case:44} {row.ours_s * 1e3:9.1f}ms {ref} {speed} {diff}  "
              f"{row.target} {row.verdict()}".rstrip())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000, help="ROC-AUC samples")
    parser.add_argument("--classes", type=int, default=18, help="ROC-AUC classes")
    parser.add_argument("--ovo-samples", type=int, default=200_000, help="one-vs-one ROC-AUC samples")
    parser.add_argument("--queries", type=int, default=8_000, help="ranking queries")
    parser.add_argument("--items", type=int, default=40, help="ranking items per query")
    parser.add_argument("--k", type=int, default=10, help="cut-off of NDCG@k and MAP@k")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each torchyard case")
    parser.add_argument("--skip-auc", action="store_true", help="only the ranking metrics")
    parser.add_argument("--device", default="cpu", help="where the metrics run, e.g. cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's); 1 is steadier on a busy machine")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), load {load:.2f}, "
          f"metrics on {torch.cuda.get_device_name(DEVICE) if DEVICE.type == 'cuda' else DEVICE}")
    if DEVICE.type != "cpu":
        print("\n".join(device_agreement()))
    rows = [] if args.skip_auc else auc_rows(args.samples, args.classes, args.ovo_samples, args.runs)
    rows += ranking_rows(args.queries, args.items, args.k, max(args.runs, 20))
    print_table(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end: {load:.2f}")


if __name__ == "__main__":
    main()
