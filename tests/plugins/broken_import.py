"""A plugin that cannot even be imported."""

import torchyard_nonexistent_dependency  # noqa: F401
