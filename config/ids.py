"""Object ids in URLs and query strings: anything that is not a valid id is simply "not found".

Django's ``int`` path converter accepts any number of digits, and a number past the database's
64-bit range raises an overflow deep in the driver (a 500). The ``id`` converter and
``parse_object_id`` keep such input at the edge.
"""

MAX_OBJECT_ID = 2**63 - 1


def parse_object_id(raw: object) -> int | None:
    """Return ``raw`` as a positive 64-bit id, or None when it can't be one."""
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        return None
    return value if 0 < value <= MAX_OBJECT_ID else None


class IdConverter:
    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
