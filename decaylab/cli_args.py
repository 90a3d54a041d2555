"""Range-checked numbers for command-line arguments: argparse refuses a bad value with a one-line usage error."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def bounded(kind: type, minimum: float | None = None, maximum: float | None = None, *,
            strict: bool = False) -> Callable[[str], int | float]:
    """An argparse ``type`` parsing a finite ``kind`` (int or float) in [minimum, maximum]
    ((minimum, maximum) with ``strict``); either bound may be None."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        low = minimum is not None and (value <= minimum if strict else value < minimum)
        high = maximum is not None and (value >= maximum if strict else value > maximum)
        if not math.isfinite(value) or low or high:
            raise argparse.ArgumentTypeError(f"must be {_range(minimum, maximum, strict)}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _range(minimum: float | None, maximum: float | None, strict: bool) -> str:
    lower = None if minimum is None else f"{'>' if strict else '>='} {minimum}"
    upper = None if maximum is None else f"{'<' if strict else '<='} {maximum}"
    return " and ".join(b for b in (lower, upper) if b) or "finite"


positive_int = bounded(int, 1)
non_negative_int = bounded(int, 0)
positive_float = bounded(float, 0, strict=True)
non_negative_float = bounded(float, 0)


def integer_list(minimum: int) -> Callable[[str], list[int]]:
    """An argparse ``type``: comma-separated integers ≥ ``minimum``, sorted, once each."""
    def parse(text: str) -> list[int]:
        try:
            values = sorted({int(v) for v in text.split(",") if v.strip()})
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 16,32,64; got {text!r}") from None
        if not values or values[0] < minimum:
            raise argparse.ArgumentTypeError(f"expected integers >= {minimum}; got {text!r}")
        return values

    return parse
