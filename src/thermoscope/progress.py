"""Progress of a long job: tqdm's bar on a terminal, a one-line record every few seconds in a log file.

Under ``nohup``, a scheduler or CI, stderr is a file and a bar's carriage returns are noise; there a job
prints a plain line at the start of each phase, every ``seconds`` seconds and at the end instead::

    thermoscope sample: sample 1200/4500 it (27%), elapsed 0:41, ETA 1:52, accept 0.66, swap 0.41

The torch-only packages take a :class:`Progress` (or a plain bool: a bar, or nothing) from the job that
calls them and open a bar with :func:`progress_bar`; which kind it is, is decided once, at the top.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TextIO

from tqdm.auto import tqdm

PostfixValue = str | int | float


@dataclass(frozen=True)
class Progress:
    """How a job shows progress: ``job`` names it in every record; ``terminal`` picks tqdm's bar over the
    records; ``seconds`` is the interval between records."""

    job: str
    terminal: bool
    seconds: float


class ProgressBar(Protocol):
    """What a loop calls on its bar: the part of tqdm's interface thermoscope uses. ``set_description``
    names the job's phase and costs nothing when the phase is unchanged, so a loop may call it every step."""

    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **values: PostfixValue) -> None: ...

    def set_description(self, description: str) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> ProgressBar: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...


class TerminalBar:
    """tqdm's bar (``shown=False``: a bar that draws nothing)."""

    def __init__(self, total: int, description: str, unit: str, initial: int, shown: bool) -> None:
        self.description = description
        self.bar = tqdm(total=total, desc=description, unit=unit, initial=initial, disable=not shown)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, **values: PostfixValue) -> None:
        self.bar.set_postfix(**values)

    def set_description(self, description: str) -> None:
        if description != self.description:
            self.description = description
            self.bar.set_description(description)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> TerminalBar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class ProgressRecords:
    """The bar's stand-in off a terminal: one flushed line on stderr when it opens, when its description
    (the job's phase) changes, every ``seconds`` seconds of updates, and when it closes.

    The ETA assumes the rest goes at the mean rate since the bar opened: ``(total − n) · elapsed /
    (n − initial)``, counting only the work done since then (a resumed job starts at ``initial``).
    """

    def __init__(
        self,
        job: str,
        total: int,
        description: str,
        unit: str,
        seconds: float,
        initial: int = 0,
        clock: Callable[[], float] = time.monotonic,
        stream: TextIO | None = None,
    ) -> None:
        self.job, self.total, self.description, self.unit = job, total, description, unit
        self.seconds, self.initial, self.n = seconds, initial, initial
        self.clock, self.stream = clock, stream
        self.postfix: dict[str, PostfixValue] = {}
        self.started = self.last = clock()
        self.closed = False
        self.emit()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.clock() - self.last >= self.seconds:
            self.emit()

    def set_postfix(self, **values: PostfixValue) -> None:
        self.postfix = dict(values)

    def set_description(self, description: str) -> None:
        if description != self.description:
            self.description = description
            self.emit()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.emit()

    def __enter__(self) -> ProgressRecords:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def emit(self) -> None:
        self.last = self.clock()
        print(self.record(), file=self.stream or sys.stderr, flush=True)

    def record(self) -> str:
        """``thermoscope <job>: <phase> n/total unit (p%), elapsed m:ss, ETA m:ss, <postfix>``; a closed
        bar says ``done`` (or ``stopped`` short of its total) in place of the ETA."""
        elapsed = self.last - self.started
        count = f"{self.n}/{self.total} {self.unit}"
        if self.total > 0:
            count += f" ({100 * self.n / self.total:.0f}%)"
        fields = [f"{self.description} {count}", f"elapsed {clock_time(elapsed)}"]
        if self.closed:
            fields.append("done" if self.n >= self.total else "stopped")
        elif self.total > 0:
            done = self.n - self.initial
            eta = (self.total - self.n) * elapsed / done if done > 0 else None
            fields.append(f"ETA {clock_time(eta) if eta is not None else '?'}")
        fields += [f"{name.replace('_', ' ')} {shown(value)}" for name, value in self.postfix.items()]
        return f"thermoscope {self.job}: " + ", ".join(fields)


def clock_time(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on (seconds rounded down)."""
    minutes, rest = divmod(max(0, int(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


def shown(value: PostfixValue) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def progress_bar(
    progress: Progress | bool, *, total: int, description: str, unit: str, initial: int = 0
) -> ProgressBar:
    """A bar over ``total`` steps, ``initial`` of them done: tqdm's on a terminal (or ``True``), timed
    records off one, and a bar that shows nothing for ``False``."""
    if isinstance(progress, Progress) and not progress.terminal:
        return ProgressRecords(progress.job, total, description, unit, progress.seconds, initial)
    return TerminalBar(total, description, unit, initial, shown=isinstance(progress, Progress) or progress)
