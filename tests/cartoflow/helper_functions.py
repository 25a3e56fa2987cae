"""Functions for the helper-process tests (``python -m tests.cartoflow.helper_functions``)."""

from __future__ import annotations

import os
import threading
from typing import Any

from cartoflow.helpers import serve


def pid() -> int:
    return os.getpid()


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any], int]:
    return args, kwargs, os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)


def chatty() -> int:
    print("a line on stdout that must not reach the caller's replies")
    return os.getpid()


def lock() -> Any:
    """A reply that does not pickle."""
    return threading.Lock(), os.getpid()


def die() -> None:
    os._exit(3)


def niceness() -> int:
    return os.nice(0)


FUNCTIONS = {f.__name__: f for f in (pid, echo, fail, chatty, lock, die, niceness)}

if __name__ == "__main__":
    serve(FUNCTIONS, nice=int(os.environ.get("HELPER_TEST_NICE", "0")))
