"""The UTC day every budget counts in, and durations written for people.

Workers AI bills in neurons and resets its free allocation at 00:00 UTC, so every count in the
books and every account mark lasts one UTC day.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Callable

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time in UTC (the default clock)."""
    return datetime.now(timezone.utc)


def utc_day(now: datetime) -> str:
    """The UTC day of `now` as `YYYY-MM-DD`: the period every budget counts in."""
    return now.astimezone(timezone.utc).strftime("%Y-%m-%d")


def next_reset(now: datetime) -> datetime:
    """The next 00:00 UTC after `now`, when budgets and the free allocation reset."""
    now = now.astimezone(timezone.utc)
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def human_duration(seconds: float) -> str:
    """Format a duration as `5 h 12 min` or `7 min`."""
    hours, minutes = divmod(max(1, math.ceil(seconds / 60)), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"

