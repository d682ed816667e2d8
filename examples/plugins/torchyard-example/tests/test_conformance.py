"""torchyard's conformance kit, plus a few checks of what the kit cannot know."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torchyard.data import Predictions
from torchyard.testing import check_plugin

import torchyard_example


def test_the_plugin_passes_the_conformance_kit() -> None:
    records = check_plugin(torchyard_example, name="example")
    assert {(r.kind, r.name) for r in records} == {
        ("loss", "poly1_cross_entropy"),
        ("metric", "macro_error"),
        ("writer", "jsonl"),
    }


def test_registering_imports_neither_torch_nor_pydantic() -> None:
    code = (
        "import sys, torchyard_example\n"
        "from torchyard.plugins import PluginHost\n"
        "assert PluginHost().add_plugin(torchyard_example, 'example').status == 'ok'\n"
        "print(sorted(m for m in ('torch', 'pydantic') if m in sys.modules))"
    )
    root = str(Path(torchyard_example.__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_poly1_with_epsilon_zero_is_cross_entropy() -> None:
    from torchyard_example.losses import Poly1CrossEntropy

    outputs, targets = torch.randn(16, 4), torch.arange(16) % 4
    ce = torch.nn.functional.cross_entropy(outputs, targets)
    assert torch.allclose(Poly1CrossEntropy(epsilon=0.0)(outputs, targets), ce)
    pt = outputs.softmax(-1)[torch.arange(16), targets]
    expected = ce + 2.0 * (1 - pt).mean()
    assert torch.allclose(Poly1CrossEntropy(epsilon=2.0)(outputs, targets), expected)


def test_macro_error_weighs_classes_equally() -> None:
    from torchyard_example.metrics import MacroError

    metric = MacroError(num_classes=3)
    # class 0: 3 of 4 right; class 1: 0 of 1 right; class 2: absent (ignored)
    targets = torch.tensor([0, 0, 0, 0, 1])
    predicted = torch.tensor([0, 0, 0, 2, 0])
    metric.update(torch.nn.functional.one_hot(predicted, 3).float(), targets)
    assert math.isclose(metric.compute(), 1 - (0.75 + 0.0) / 2)
    assert metric.higher_is_better is False


def test_jsonl_writes_one_object_per_id() -> None:
    from torchyard_example.writers import JsonLinesWriter

    outputs = torch.tensor([[0.1, 2.0], [3.0, 0.0]]).numpy()
    predictions = Predictions(ids=["a", "b"], outputs=outputs, class_names=["no", "yes"])
    writer = JsonLinesWriter(class_names=True, probabilities=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = writer.write(predictions, Path(tmp))
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["id"], r["label"]) for r in rows] == [("a", "yes"), ("b", "no")]
    assert all(math.isclose(sum(r["probabilities"]), 1.0, rel_tol=1e-6) for r in rows)
