"""Text that can't be stored: a lone UTF-16 surrogate.

JSON may escape a surrogate on its own (``"\\ud800"``); Python decodes it to a code point that is
not a character, so PostgreSQL, the JSON renderer and the exports all fail on it later, with a 500
or a broken file. Requests (config.parsers) and imported files (the importers' line readers) are
checked once, where they are parsed, and refused with a message that names the field.
"""

from __future__ import annotations

import re

LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# the escape that makes one in JSON text: a line without it is left alone (the check walks the value)
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
SURROGATE_REASON = "holds a lone UTF-16 surrogate (such as \\ud800), which is not text"


def lone_surrogate_path(value: object) -> str | None:
    """Return where the first lone surrogate of a parsed JSON value is ("context.0.content"), or None.

    The whole value is "" at the top; a surrogate in an object's key reads "flags (a key)". Walks
    without recursion: a body nested as deep as the JSON decoder allows is walked too.
    """
    pending: list[tuple[object, str]] = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if LONE_SURROGATE.search(item):
                return path
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if isinstance(key, str) and LONE_SURROGATE.search(key):
                    return f"{path} (a key)" if path else "a key"
                children.append((child, f"{path}.{key}" if path else str(key)))
            pending.extend(reversed(children))
        elif isinstance(item, list):
            pending.extend(reversed([(child, f"{path}.{i}" if path else str(i)) for i, child in enumerate(item)]))
    return None


def lone_surrogate_refusal(value: object) -> str | None:
    """Return a sentence naming where ``value`` holds a lone surrogate, or None when it holds none."""
    path = lone_surrogate_path(value)
    if path is None:
        return None
    return f"{path or 'the body'} {SURROGATE_REASON}."
