"""wespe: WESPE weak supervision for photo enhancement on PyTorch Lightning, and its losses.

The names below are imported when first used, so that ``import wespe.inference`` (the
``wespe enhance`` command) does not pay for Lightning's import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["WESPE", "Discriminator", "EnhancerModule", "Generator", "SupervisedEnhancer"]
__version__ = "0.1.0"

_HOMES = {
    "WESPE": "wespe.module",
    "EnhancerModule": "wespe.module",
    "SupervisedEnhancer": "wespe.module",
    "Discriminator": "wespe.networks",
    "Generator": "wespe.networks",
}

if TYPE_CHECKING:
    from wespe.module import WESPE, EnhancerModule, SupervisedEnhancer
    from wespe.networks import Discriminator, Generator


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'wespe' has no attribute {name!r}")
