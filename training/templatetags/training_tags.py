"""Template helpers of the training pages: who sees the Training links, durations, figures, progress."""

from __future__ import annotations

import math

from django import template

from annotation.selectors import user_manages_project_data

register = template.Library()


@register.simple_tag
def training_visible(project, user) -> bool:
    """``{% training_visible project user as shown %}``: managers and ML engineers of the project."""
    return bool(project and getattr(project, "pk", None)) and user_manages_project_data(user=user, project=project)


@register.filter
def duration(seconds) -> str:
    """Seconds in words: 42 -> "42 s", 3725 -> "1 h 02 min"; None -> "–"."""
    if seconds is None:
        return "–"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def figure(value) -> str:
    """A metric as a person reads it: 0.123456 -> "0.1235", 12345.6 -> "12,346", None -> "–"."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "–" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) or (abs(value) >= 1000 and value == int(value)):
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if abs(value) < 0.001:
        return f"{value:.2e}"
    return f"{value:.4g}"


@register.filter
def percent_width(fraction) -> str:
    """A fraction 0..1 as a CSS width ("37.0%"); None or junk -> "0%"."""
    try:
        return f"{max(0.0, min(1.0, float(fraction))) * 100:.1f}%"
    except (TypeError, ValueError):
        return "0%"


@register.filter
def short_sha(sha256: str) -> str:
    return (sha256 or "")[:12]


@register.filter
def percent(fraction) -> str:
    """A share 0..1 as a person reads it: 0.7261 -> "72.6 %"; None -> "–"."""
    if fraction is None or isinstance(fraction, bool) or not isinstance(fraction, int | float):
        return "–"
    return f"{fraction * 100:.1f}\u00a0%"  # no break before the sign
