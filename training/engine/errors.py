"""The one exception the engine raises for problems the user can fix (config, data, paths)."""


class EngineError(Exception):
    """Bad config or data: `python -m training.engine` prints the message and exits non-zero.

    Raise it with a message that names the file, the line or the key, so the person reading the run's
    log knows what to change without reading a traceback.
    """
