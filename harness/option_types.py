"""argparse types of the plugin's and the command line's options: each value checked where it is parsed, so a count
below its least, a level outside (0, 1) or a bound that is not above 0 is a usage error naming the option (pytest and
``python -m harness`` exit with a usage error), never accepted nor silently replaced by a default. A leaf of the
package, below the plugin and the command line alike."""

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


def number_between(low: float, high: float, what: str) -> Callable[[str], float]:
    """argparse type of a real-valued option strictly between ``low`` and ``high`` (``inf`` for no upper end), so a
    NaN, an infinity or a value on the boundary is refused too; ``what`` says what it is, for the message."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number ({what})") from None
        if not low < number < high:
            raise argparse.ArgumentTypeError(f"{value}: {what}")
        return number

    parse.__name__ = what
    return parse


#: A bound in seconds: a finite number above 0.
positive_seconds = number_between(0.0, float("inf"), "a number of seconds above 0")
#: ``--confidence``: a level strictly between 0 and 1.
confidence_level = number_between(0.0, 1.0, "a level strictly between 0 and 1, e.g. 0.95")


#: The fewest bootstrap draws an interval is made of (fewer give an interval that is mostly noise).
LEAST_RESAMPLES = 100
