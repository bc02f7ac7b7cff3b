"""Imports of the `ml` extra (scikit-learn, xgboost, skops) and pandas, on demand.

These libraries carry no type information, so they come back as ``Any``; calling
services needs none of them, so ``import keel.client`` never imports them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXTRA_HINT = "install the client's ML extra: pip install 'keel-client[ml]'"


def require(module: str) -> Any:
    """Import ``module`` or fail with an ImportError saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{module} is needed here; {_EXTRA_HINT}") from error


def optional(module: str) -> Any | None:
    """Import ``module`` if it is installed, else ``None``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
