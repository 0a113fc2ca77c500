"""Plain JSON values from the numbers the simulator and the reports hold (numpy scalars, nan, inf)."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np


def jsonable(value: Any, infinity: Literal["null", "string"] = "null") -> Any:
    """``value`` with numpy scalars as Python numbers, nan as None and the infinities as None (``"null"``)
    or as ``"inf"`` / ``"-inf"`` (``"string"``: a record that must round-trip them), dict keys as strings;
    ``json.dumps(..., allow_nan=False)`` then always succeeds."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, infinity) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, infinity) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value) or infinity == "null":
            return None
        return "inf" if value > 0 else "-inf"
    return value
