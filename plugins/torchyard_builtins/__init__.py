"""torchyard's built-in components, as ordinary plugins.

Each subpackage is one plugin, listed in torchyard's ``pyproject.toml``
under the ``torchyard`` entry-point group exactly like a third-party
plugin. A subpackage's ``__init__`` only registers (import paths, no torch
import); the implementations live in sibling modules and are imported on
first use.
"""
