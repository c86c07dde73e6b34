"""Request parsers: DRF's, with input they choke on turned into a 400 rather than a 500."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from config.text import lone_surrogate_refusal


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; a body nested too deeply for Python's decoder ("[[[[…") answers 400, and so does
    a string holding a lone UTF-16 surrogate ("\\ud800"), which no later step could store or render."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        refusal = lone_surrogate_refusal(data)
        if refusal is not None:
            raise ParseError(f"JSON parse error - {refusal}")
        return data
