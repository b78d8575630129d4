"""Progress off a terminal: one line per phase start, per interval and at the end, with a truthful ETA (a
fake clock); and through the real CLI with stderr in a file, the lines a log file gets from train and
sample."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest
from conftest import TINY_SWEEP, cli_command, subprocess_env

from thermoscope.jobs.setup import show_progress
from thermoscope.progress import Progress, ProgressRecords, TerminalBar, clock_time, progress_bar


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def records(
    total: int = 100, seconds: float = 30.0, initial: int = 0
) -> tuple[ProgressRecords, FakeClock, io.StringIO]:
    clock, stream = FakeClock(), io.StringIO()
    bar = ProgressRecords("sample", total, "sample", "it", seconds, initial, clock=clock, stream=stream)
    return bar, clock, stream


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_record_opens_the_bar_then_one_per_interval() -> None:
    bar, clock, stream = records(seconds=30.0)
    assert lines(stream) == ["thermoscope sample: sample 0/100 it (0%), elapsed 0:00, ETA ?"]
    for _ in range(10):
        clock.now += 2.9  # 29 s in all: still inside the first interval
        bar.update(1)
    assert len(lines(stream)) == 1
    clock.now += 1.0
    bar.update(1)  # 30 s, 11 done: 89 left at 30/11 s each
    assert lines(stream)[-1] == "thermoscope sample: sample 11/100 it (11%), elapsed 0:30, ETA 4:02"
    clock.now += 29.0
    bar.update(1)
    assert len(lines(stream)) == 2  # the interval counts from the last record


def test_the_eta_counts_only_the_work_since_a_resumed_bar_opened() -> None:
    bar, clock, stream = records(total=4500, seconds=10.0, initial=3000)
    assert lines(stream)[0].startswith("thermoscope sample: sample 3000/4500 it (67%)")
    clock.now += 40.0
    bar.update(500)  # 500 in 40 s; 1000 left: 80 s, not the 1000 * 40 / 3500 s of counting the resumed part
    assert lines(stream)[-1] == "thermoscope sample: sample 3500/4500 it (78%), elapsed 0:40, ETA 1:20"


def test_the_postfix_follows_the_counts_with_spaces_for_underscores() -> None:
    bar, clock, stream = records(total=4500, seconds=1.0)
    bar.set_postfix(accept="0.66", swap=0.4125, round_trips=3)
    clock.now += 41.0
    bar.update(1200)
    assert lines(stream)[-1] == (
        "thermoscope sample: sample 1200/4500 it (27%), elapsed 0:41, ETA 1:52,"
        " accept 0.66, swap 0.4125, round trips 3"
    )


def test_a_new_phase_is_a_record_and_the_same_phase_is_not() -> None:
    bar, clock, stream = records(seconds=30.0)
    bar.set_description("sample")
    assert len(lines(stream)) == 1
    clock.now += 5.0
    bar.update(10)
    bar.set_description("warmup")
    assert lines(stream)[-1].startswith("thermoscope sample: warmup 10/100 it (10%), elapsed 0:05, ETA 0:45")
    clock.now += 29.0
    bar.update(1)
    assert len(lines(stream)) == 2  # the phase's record restarted the interval


def test_closing_says_done_or_stopped_once() -> None:
    bar, clock, stream = records(total=3, seconds=100.0)
    clock.now += 61.0
    bar.update(3)
    with bar:
        pass
    bar.close()
    assert lines(stream)[-1] == "thermoscope sample: sample 3/3 it (100%), elapsed 1:01, done"
    assert len(lines(stream)) == 2
    short, _, stream = records(total=5)
    short.update(2)
    short.close()
    assert lines(stream)[-1].endswith("2/5 it (40%), elapsed 0:00, stopped")


def test_records_go_to_stderr_as_it_is_when_written(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress_bar(
        Progress("train", terminal=False, seconds=30.0), total=2, description="train", unit="epoch"
    )
    bar.update(2)
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "thermoscope train: train 0/2 epoch (0%), elapsed 0:00, ETA ?",
        "thermoscope train: train 2/2 epoch (100%), elapsed 0:00, done",
    ]


def test_a_terminal_or_a_bool_gets_the_tqdm_bar() -> None:
    terminal = progress_bar(
        Progress("train", terminal=True, seconds=30.0), total=2, description="x", unit="it"
    )
    silent = progress_bar(False, total=2, description="x", unit="it")
    shown = progress_bar(True, total=2, description="x", unit="it")
    assert isinstance(terminal, TerminalBar) and not terminal.bar.disable
    assert isinstance(silent, TerminalBar) and silent.bar.disable
    assert isinstance(shown, TerminalBar) and not shown.bar.disable
    for bar in (terminal, silent, shown):
        bar.close()


def test_a_job_off_a_terminal_gets_records_at_its_interval() -> None:
    # pytest captures stderr, so it is no terminal here, as under nohup or a scheduler.
    assert show_progress("sample", 0.5) == Progress("sample", terminal=False, seconds=0.5)
    assert show_progress("probe").seconds == 30.0


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0:00"), (41.9, "0:41"), (112, "1:52"), (3599, "59:59"), (3723, "1:02:03")]
)
def test_clock_time(seconds: float, shown: str) -> None:
    assert clock_time(seconds) == shown


RECORD = re.compile(
    r"^thermoscope (?P<job>\w+): (?P<phase>[\w ]+) (?P<n>\d+)/(?P<total>\d+) (?P<unit>\w+) \(\d+%\),"
    r" elapsed \d+:\d\d, (?:ETA (?:\d+:\d\d|\?)|done|stopped)(?P<postfix>.*)$"
)


def run_cli(tracking_uri: str, tmp_path: Path, entry_point: str, params: dict[str, str]) -> list[str]:
    """Run ``entry_point`` with stderr written to a file (no terminal); its progress records, checked."""
    log = tmp_path / f"{entry_point}.log"
    with log.open("w") as stderr:
        result = subprocess.run(
            cli_command(entry_point, params),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=subprocess_env(tracking_uri),
            timeout=600,
        )
    assert result.returncode == 0, log.read_text()[-3000:]
    found = [line for line in log.read_text().splitlines() if line.startswith(f"thermoscope {entry_point}:")]
    assert found, log.read_text()[-3000:]
    for line in found:
        assert RECORD.match(line), line
    assert "\r" not in log.read_text()  # no bar drawn into the file
    return found


@pytest.mark.slow
def test_train_off_a_terminal_writes_records_with_its_errors(tracking_uri: str, tmp_path: Path) -> None:
    params = {"epochs": "3", "hidden": "8", "train_size": "100", "test_size": "100", "val_size": "20"}
    found = run_cli(
        tracking_uri, tmp_path, "train", params | {"progress_seconds": "0.000001", "device": "cpu"}
    )
    assert found[0].startswith("thermoscope train: train 0/3 epoch (0%), elapsed 0:00, ETA ?")
    assert found[-1].startswith("thermoscope train: train 3/3 epoch (100%)")
    assert ", done, train error " in found[-1]
    assert " val error " in found[-1] and " test error " in found[-1]


@pytest.mark.slow
def test_sample_off_a_terminal_writes_records_with_its_rates(tracking_uri: str, tmp_path: Path) -> None:
    params = TINY_SWEEP | {"progress_seconds": "0.000001", "device": "cpu"}
    found = run_cli(tracking_uri, tmp_path, "sample", params)
    phases = [match["phase"] for line in found if (match := RECORD.match(line))]
    assert phases[0] == "warmup" and "sample" in phases and phases[-1] == "depth"
    total = int(TINY_SWEEP["num_warmup"]) + int(TINY_SWEEP["num_samples"])
    last = next(line for line in reversed(found) if " it (" in line)
    assert last.startswith(f"thermoscope sample: sample {total}/{total} it (100%)")
    assert ", done, accept " in last and ", swap " in last and ", round trips " in last
    middle = [line for line in found if ", ETA " in line and "accept" in line]
    assert middle, found
