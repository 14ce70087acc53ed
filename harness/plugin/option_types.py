"""argparse types of the plugin's options: each value checked where it is parsed, so a count below its least, a level
outside (0, 1) or a bound that is not above 0 is a usage error naming the option (pytest exits 4), never accepted
nor silently replaced by a default."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(least: int, what: str) -> Callable[[str], int]:
    """argparse type of a count option: a whole number >= ``least``; argparse names the option and shows why."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number ({what})") from None
        if number < least:
            raise argparse.ArgumentTypeError(f"{number}: must be at least {least} ({what})")
        return number

    parse.__name__ = f"whole number >= {least}"
    return parse


def positive_seconds(value: str) -> float:
    """argparse type of a bound in seconds: a finite number above 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"{value}: a number of seconds above 0")
    return number


def confidence_level(value: str) -> float:
    """argparse type of ``--confidence``: a level strictly between 0 and 1."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"{value}: a level strictly between 0 and 1, e.g. 0.95")
    return number


#: The fewest bootstrap draws an interval is made of (fewer give an interval that is mostly noise).
LEAST_RESAMPLES = 100
