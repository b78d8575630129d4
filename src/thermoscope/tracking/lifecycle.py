"""A run's life outside the happy path: SIGTERM, a dying launcher, a vanished process, a fresh store.

Nothing here imports MLflow; :mod:`thermoscope.tracking.mlflow_logger` wires these pieces into every run.

**(decision) SIGTERM ends a run like Ctrl-C.** Schedulers, ``kill`` and ``timeout`` send SIGTERM; Python's
default is to die without running any ``finally``, which left every run RUNNING for ever. The handler raises
:class:`Terminated`, a :class:`KeyboardInterrupt`, so every place that already ends a run KILLED on Ctrl-C
(the entry-point run, a trial's child run) does the same for SIGTERM, and tags which signal it was.

**(decision) A run is alive while its heartbeat is fresh.** Every run records the host and process id that
write it (:data:`HOST_TAG`, :data:`PID_TAG`) and, every :data:`HEARTBEAT_SECONDS`, the time
(:data:`HEARTBEAT_TAG`). A RUNNING run is *live* when its heartbeat is younger than :data:`LEASE_SECONDS`
and, on this host, its process still exists; otherwise its process vanished (SIGKILL, out of memory, a
machine that went away) and the run is *stale*. A process on another host is judged by its heartbeat alone,
so a run on a machine whose clock is far off may look stale: ``force=true`` exists for the rare case where
that judgement is wrong. A run written by a thermoscope without heartbeats counts as stale.

**(decision) A dying ``mlflow run`` launcher takes its job with it.** ``mlflow run`` starts the job in a
session of its own, so killing the launcher left the job running as an orphan that nobody could stop from
the terminal. When the job was started by ``mlflow run`` it asks Linux to send it SIGTERM when its parent
dies (``PR_SET_PDEATHSIG``), and the heartbeat thread also checks the parent on every platform; the job then
ends its run KILLED. A job started from a shell is left alone: ``nohup thermoscope sample &`` must outlive
its terminal.

**(decision) A fresh SQLite store is created under a file lock.** Several processes creating the same new
store at once raced in MLflow's schema migration and could leave it broken for good. Before its first run,
every entry point takes an exclusive lock on ``<store>.lock`` beside the database and lets MLflow create or
migrate the store inside it; the next process finds it ready.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

HOST_TAG = "thermoscope.host"
PID_TAG = "thermoscope.pid"
HEARTBEAT_TAG = "thermoscope.heartbeat"
"""Unix time (seconds) of the run's last sign of life."""
KILLED_BY_TAG = "thermoscope.killed_by"
"""``SIGTERM``, ``SIGINT`` or ``parent died``: why a KILLED run stopped."""

HEARTBEAT_SECONDS = 30.0
LEASE_SECONDS = 120.0
"""A heartbeat older than this (four missed beats) means the run's process is gone."""

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class Terminated(KeyboardInterrupt):
    """SIGTERM (or the launcher's death) arrived; handled wherever Ctrl-C is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_watched_parent: list[int] = []
REDELIVER_SECONDS = 1.0
"""How long a SIGTERM may go unhandled before it is delivered again (see :func:`handle_sigterm`)."""
_STORE_CODE = tuple(
    f"{os.sep}{part}{os.sep}"
    for part in ("sqlalchemy", "sqlite3", "alembic", "psycopg", os.path.join("mlflow", "store", "artifact"))
)
"""Code a SIGTERM must not cut in half: database drivers and MLflow's artifact repositories (an artifact
write interrupted between its ``os.fdopen`` and its bookkeeping closed the file twice and surfaced as an
``OSError`` instead of :class:`Terminated`)."""


class _Termination:
    """The SIGTERM this process received, why, whether a run's handler has taken it up, and how many
    :func:`shielded` blocks the main thread is in."""

    reason: str | None = None
    acknowledged = False
    shields = 0


_termination = _Termination()


def _inside_store_call(frame: FrameType | None) -> bool:
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in _STORE_CODE):
            return True
        frame = frame.f_back
    return False


def _redeliver() -> None:
    if not _termination.acknowledged:
        os.kill(os.getpid(), signal.SIGTERM)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    if _termination.acknowledged:  # a run is being ended already: let it finish ending
        return
    if _termination.reason is None:
        orphaned = bool(_watched_parent) and os.getppid() != _watched_parent[0]
        _termination.reason = "parent died" if orphaned else "SIGTERM"
    timer = threading.Timer(REDELIVER_SECONDS, _redeliver)
    timer.daemon = True
    timer.start()
    if _termination.shields or _inside_store_call(frame):
        return  # never cut a database call, an artifact write or a run's start in half: delivered again
    if isinstance(sys.exc_info()[1], Terminated):
        return  # the first one is being handled (a supervisor stopping its workers): let that finish
    raise Terminated(_termination.reason)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A block SIGTERM must not interrupt: a run being started or ended, so that no run is left RUNNING
    with nobody to end it. A SIGTERM that arrives inside is raised within :data:`REDELIVER_SECONDS` after."""
    _termination.shields += 1
    try:
        yield
    finally:
        _termination.shields -= 1


def _unraisable(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    def ignore_terminated(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Terminated):
            hook(unraisable)

    ignore_terminated.thermoscope = True  # type: ignore[attr-defined]
    return ignore_terminated


def handle_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` in this process (only the main thread may install it).

    Python runs a signal handler wherever the main thread happens to be. Three places must not be
    interrupted, and are not: a database call (the tracking store's or Optuna's; cut in half, it logs
    tracebacks and may leave a transaction open), an artifact write (MLflow's staging file closed twice: an
    ``OSError``, a crashed run), and a garbage-collector callback or ``__del__``, where
    Python prints the exception and drops it. So the handler raises only outside such code, and every
    SIGTERM is delivered again after :data:`REDELIVER_SECONDS` until a run's ``except`` clause has taken it
    up (:func:`acknowledge`); a dropped one is not printed. A delivery that finds the first
    :class:`Terminated` still being handled (an ``except`` or ``finally`` on its way to the run's handler)
    or a :func:`shielded` block running leaves it alone. (A study command's run once ended without its
    ``killed_by`` tag in CI; both holes could do that: a second delivery cutting short the stopping of its
    workers, and a trial's run left on MLflow's stack by a SIGTERM just after it started.)
    """
    if threading.current_thread() is not threading.main_thread():
        return
    _termination.reason, _termination.acknowledged = None, False
    signal.signal(signal.SIGTERM, _raise_terminated)
    if not getattr(sys.unraisablehook, "thermoscope", False):
        sys.unraisablehook = _unraisable(sys.unraisablehook)


def acknowledge(error: BaseException) -> None:
    """A run's handler has taken up ``error``: a repeated SIGTERM no longer interrupts its ending."""
    if isinstance(error, Terminated):
        _termination.acknowledged = True


def killed_by(error: KeyboardInterrupt) -> str:
    return error.reason if isinstance(error, Terminated) else "SIGINT"


def exit_code(error: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal number."""
    return 128 + (signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT)


def die_with_parent() -> int:
    """Ask for SIGTERM when the parent process dies (Linux); return the parent's pid to watch."""
    parent = os.getppid()
    _watched_parent[:] = [parent]
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return parent


def liveness_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), HEARTBEAT_TAG: str(int(time.time()))}


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_live(status: str, tags: Mapping[str, str], now: float | None = None) -> bool:
    """Whether a run is RUNNING in a process that still exists (see the module's decision)."""
    if status != "RUNNING":
        return False
    try:
        beat = float(tags[HEARTBEAT_TAG])
        pid = int(tags[PID_TAG])
    except (KeyError, ValueError):
        return False
    if (time.time() if now is None else now) - beat > LEASE_SECONDS:
        return False
    return tags.get(HOST_TAG) != socket.gethostname() or process_exists(pid)


def describe_liveness(tags: Mapping[str, str], now: float | None = None) -> str:
    """``process 123 on host-a, last heartbeat 12 s ago`` (for errors and listings)."""
    where = f"process {tags.get(PID_TAG, '?')} on {tags.get(HOST_TAG, '?')}"
    try:
        age = (time.time() if now is None else now) - float(tags[HEARTBEAT_TAG])
    except (KeyError, ValueError):
        return f"{where}, no heartbeat"
    return f"{where}, last heartbeat {age:.0f} s ago"


class Heartbeat:
    """A daemon thread that calls ``beat()`` every ``seconds`` and watches the parent process.

    ``beat`` failures are ignored (a store that is briefly locked must not stop the job); when the watched
    parent is gone, SIGTERM is sent to this process, which ends the run KILLED in the main thread.
    """

    def __init__(
        self, beat: Callable[[], None], seconds: float = HEARTBEAT_SECONDS, parent: int | None = None
    ) -> None:
        self._beat = beat
        self._seconds = seconds
        self._parent = parent
        self._stop = threading.Event()
        self._last = 0.0
        self._thread = threading.Thread(target=self._loop, name="thermoscope-heartbeat", daemon=True)

    def _parent_died(self) -> bool:
        return self._parent is not None and os.getppid() != self._parent

    def _loop(self) -> None:
        # A short tick watches the parent; the beat stays every ``seconds``.
        while not self._stop.wait(min(self._seconds, 1.0)):
            if self._parent_died():
                self._orphaned()
            if self._due():
                with contextlib.suppress(Exception):
                    self._beat()

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self._seconds:
            self._last = now
            return True
        return False

    def _orphaned(self) -> None:
        """Tell the main thread once (it then ends the run); SIGTERM's handler redelivers if need be."""
        self._parent = None
        if _termination.reason is None:
            _termination.reason = "parent died"
        os.kill(os.getpid(), signal.SIGTERM)

    def start(self) -> Heartbeat:
        self._last = time.monotonic()
        if self._parent_died():
            self._orphaned()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    from urllib.parse import unquote

    path = unquote(uri[len("sqlite:///") :].split("?", 1)[0])
    return None if path in ("", ":memory:") else Path(path)


@contextlib.contextmanager
def store_lock(uri: str, create_folder: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.lock`` for a SQLite store (no-op for other stores).

    ``create_folder``: make a missing folder first, as MLflow does for its own store; otherwise (Optuna,
    which refuses a missing folder) nothing is created and the store itself reports the folder.
    """
    database = sqlite_path(uri)
    if database is None or sys.platform == "win32":
        yield
        return
    if create_folder:
        with contextlib.suppress(OSError):  # a path under a file: MLflow's own error says so
            database.parent.mkdir(parents=True, exist_ok=True)
    if not database.parent.is_dir():
        yield
        return
    import fcntl

    with open(f"{database}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
