"""Run the same work in many threads released at the same instant, each on its own database connection."""

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection


def run_at_once(work: Callable[[Any], Any], inputs: Sequence[Any], *, timeout: float = 120) -> list:
    """Call ``work(item)`` for every item in its own thread, all started together; return the results in order.

    Each thread opens its own connection (closed at the end), so on PostgreSQL the calls really race.
    An exception in any thread fails the caller, with every thread's error listed.
    """
    barrier = threading.Barrier(len(inputs))
    results: list = [None] * len(inputs)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work(inputs[index])
        except BaseException as error:  # reported below: a thread's exception is otherwise lost
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not errors, errors
    return results
