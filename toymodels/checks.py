"""Argument checks shared by the estimators: numbers from Python or numpy, refused with advice.

Every public entry point validates its arguments with these *before* any sampling or
calibration, so a typo costs a message, not a minute. Python and numpy scalars are accepted
alike wherever a number is (``np.float64(1e3)``, ``np.int64(8)``, a 0-d tensor); booleans are not.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = ["as_int", "as_float", "as_optional_int", "as_choice"]


def _scalar(value):
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point() \
            and value.dtype != torch.bool:
        return int(value.item())
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return float(value.item())
    return value


def as_int(name: str, value, minimum: int = 0, hint: str = "") -> int:
    """``value`` as a Python int ≥ ``minimum`` (Python, numpy or 0-d tensor integers)."""
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}"
                         + (f"; {hint}" if hint else ""))
    return int(value)


def as_optional_int(name: str, value, minimum: int = 0, hint: str = "") -> int | None:
    return None if value is None else as_int(name, value, minimum, hint)


def as_float(name: str, value, *, minimum: float | None = None, strict: bool = False,
             maximum: float | None = None, hint: str = "") -> float:
    """``value`` as a finite Python float; ``minimum`` (exclusive when ``strict``) and ``maximum``."""
    value = _scalar(value)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bound = ""
        if minimum is not None:
            bound = f" {'>' if strict else '≥'} {minimum:g}"
        if maximum is not None:
            bound += f"{' and' if bound else ''} ≤ {maximum:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}"
                         + (f"; {hint}" if hint else ""))
    return value


def as_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value
