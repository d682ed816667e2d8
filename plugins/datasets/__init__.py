"""Built-in datasets: scikit-learn's toy sets, shipped with the package."""

from __future__ import annotations

from typing import Any

import torchyard


@torchyard.hookimpl
def register_datasets(register: Any) -> None:
    register(
        "digits",
        "torchyard_builtins.datasets.sklearn_toys:digits",
        description="scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), "
        "split into train, validation and an unlabelled test part.",
    )
