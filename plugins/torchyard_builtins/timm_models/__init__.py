"""timm's image classifiers as one model component, ``timm``.

Installed with ``pip install 'torchyard[timm]'``. Its parameter ``arch``
takes any architecture of the installed timm (``resnet18``, or with a
weights tag, ``resnet18.a1_in1k``), so the ~1,400 names neither swamp
``torchyard list`` nor clash with the torchvision built-ins;
``torchyard show model timm`` lists them.

Without timm the plugin registers nothing usable: it raises
:class:`~torchyard.errors.PluginUnavailable`, so ``torchyard plugins`` shows
it as unavailable and a config naming ``timm`` is told to install the extra.
Whether timm is there is asked of ``importlib.util.find_spec``, which
imports nothing: listing stays free of torch and timm.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torchyard
from torchyard.errors import PluginUnavailable

#: The message of the plugin's unavailable status.
MISSING = "timm is not installed (pip install 'torchyard[timm]')"


@torchyard.hookimpl
def register_models(register: Any) -> None:
    # registered first, so that `model: {name: timm}` without timm says why
    register(
        "timm",
        "torchyard_builtins.timm_models.factory:timm_model",
        description="Any timm image classifier, chosen by arch "
        "(`torchyard show model timm` lists them).",
    )
    if importlib.util.find_spec("timm") is None:
        raise PluginUnavailable(MISSING)
