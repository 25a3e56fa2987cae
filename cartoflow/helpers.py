"""Long-lived helper processes that run named functions for the calling process.

Work that holds the interpreter lock (drawing with matplotlib, validating with Great
Expectations) only takes turns with the caller's other threads when run in a thread. A helper
(``python -m <module>``, which imports only what its functions need) runs it on another core,
and its imports happen there too, beside the caller's own.

Each :class:`Helper` is one such process, one call at a time: the caller sends the function's
name and arguments, the helper replies with the return value or the exception it raised, both
pickled in length-prefixed frames over the helper's stdin and stdout. It is a plain subprocess,
not a ``multiprocessing`` pool: a spawned pool re-runs the caller's ``__main__`` module, which
for a script that starts a round at top level would start the round again.

Where the helper cannot start, dies, or cannot pickle an argument or a reply, the function runs
in the calling process instead, so the result (or the error, with its type and message) is the
same either way. A helper that is found dead before a call is started again; one that dies
during a call is not (the call's own input may be what kills it).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, NoReturn

__all__ = ["Helper", "serve"]

_LENGTH = struct.Struct("<Q")


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> bytes:
    """One frame; EOFError when the other side closed its end (or died) before sending it."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("the helper process closed its end")
    (size,) = _LENGTH.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the helper process closed its end mid-reply")
    return payload


class Helper:
    """One helper process (``python -m module``) that runs ``functions`` on request.

    Args:
        module: the module whose ``__main__`` calls :func:`serve` with the same functions.
        functions: name -> function; also what runs here when the helper cannot.
    """

    def __init__(self, module: str, functions: Mapping[str, Callable[..., Any]]) -> None:
        self.module = module
        self.functions = functions
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._failed = False

    def _running(self) -> subprocess.Popen[bytes] | None:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._process = None
        if self._failed:
            return None
        package_root = str(Path(__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        except OSError:
            self._failed = True
        return self._process

    def start(self) -> None:
        """Start the process now (its imports run while the caller goes on); no-op if running."""
        with self._lock:
            self._running()

    def busy(self) -> bool:
        return self._lock.locked()

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """``functions[name](*args, **kwargs)``, in the helper when it can, else here.

        Raises:
            KeyError: an unknown function name.
            Whatever the function raises (the helper's exception, re-raised here).
        """
        function = self.functions[name]
        with self._lock:
            process = self._running()
            if process is not None and process.stdin is not None and process.stdout is not None:
                try:
                    request = pickle.dumps((name, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:  # an argument that does not pickle: run it here
                    request = None
                if request is not None:
                    try:
                        _write_frame(process.stdin, request)
                        reply = _read_frame(process.stdout)
                    except (OSError, EOFError):  # the helper died: run here from now on
                        self._stop()
                        self._failed = True
                    else:
                        try:
                            status, value = pickle.loads(reply)
                        except Exception:  # a reply that does not unpickle here: run it here
                            status, value = "rerun", None
                        if status == "ok":
                            return value
                        if status == "error":
                            raise value
        return function(*args, **kwargs)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the helper's loop ends at the end of its input
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def stop(self) -> None:
        """Stop the process; a later call starts it again."""
        with self._lock:
            self._stop()
            self._failed = False


def serve(
    functions: Mapping[str, Callable[..., Any]],
    *,
    warm_up: Callable[[], Any] | None = None,
    nice: int = 0,
) -> NoReturn:
    """The helper's loop: run each request from stdin, reply on stdout, until stdin closes.

    ``warm_up`` runs first (the imports), before the first request is read. Anything the
    functions print goes to stderr: stdout carries only the replies. ``nice`` > 0 lowers the
    helper's CPU priority: work that runs beside the caller's next steps then takes the cores
    they leave, instead of half of theirs.
    """
    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    if warm_up is not None:
        warm_up()
    while True:
        try:
            name, args, kwargs = pickle.loads(_read_frame(requests))
        except EOFError:
            break
        try:
            reply: tuple[str, Any] = ("ok", functions[name](*args, **kwargs))
        except Exception as error:  # sent to the caller, which raises it
            reply = ("error", error)
        try:
            payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # the caller runs the call itself, for the same result or error
            payload = pickle.dumps(("rerun", None))
        _write_frame(replies, payload)
    replies.close()
    # Every reply is sent and every file closed: skip tearing down the imported libraries
    # (matplotlib, pandas, Great Expectations: up to seconds the caller would wait at its exit).
    os._exit(0)
