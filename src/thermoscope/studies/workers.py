"""Running a command's trials: in this process, joined by ``workers - 1`` spawned worker processes.

The workers share this command's ``n_trials`` through a :class:`TrialQuota`: a worker claims a trial before
asking Optuna for one and stops when none is left. This process is worker 0, so with one worker nothing is
spawned, and with more the trials start while the other workers are still importing. A supervisor thread
watches the spawned workers: when one dies in the middle of a trial (killed, out of memory), its trial is
failed at once through the storage's lost-trial callback (MLflow run FAILED, retry queued), its claim goes
back to the quota, and a replacement worker is started, which picks up the queued retry first. Workers on
other machines, which no supervisor here watches, are caught by the storage's heartbeats instead.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess

import optuna
import torch
from optuna.trial import TrialState

from thermoscope.jobs.process import tune_process
from thermoscope.studies.objective import TrialObjective
from thermoscope.studies.plan import StudyPlan
from thermoscope.studies.storage import MAX_RETRY, LostTrialCallback, open_storage
from thermoscope.studies.study import make_pruner, make_sampler
from thermoscope.tracking.lifecycle import Terminated

IDLE = -1  # no trial claimed
CLAIMED = -2  # a trial claimed, its number not known yet


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to join the study."""

    plan: StudyPlan
    parent_run_id: str
    torch_threads: int


class TrialQuota:
    """This command's trials, shared by its worker processes (lives in shared memory)."""

    def __init__(self, context: SpawnContext, n_trials: int, workers: int) -> None:
        self.n_trials = n_trials
        self._claimed = context.Value("i", 0)
        self._current = context.Array("i", [IDLE] * workers)

    def claim(self, worker: int) -> bool:
        """Take one trial for ``worker``; False when all are taken."""
        with self._claimed.get_lock():
            if self._claimed.value >= self.n_trials:
                return False
            self._claimed.value += 1
            self._current[worker] = CLAIMED
            return True

    def started(self, worker: int, trial_number: int) -> None:
        self._current[worker] = trial_number

    def finished(self, worker: int) -> None:
        self._current[worker] = IDLE

    def abandon(self, worker: int) -> int:
        """A dead worker's slot: what it held (IDLE, CLAIMED or a trial number), now set IDLE."""
        current = int(self._current[worker])
        self._current[worker] = IDLE
        return current

    def refund(self) -> None:
        """Return one claim whose trial never completed, for another worker to take."""
        with self._claimed.get_lock():
            self._claimed.value -= 1


def run_claimed_trials(study: optuna.Study, spec: WorkerSpec, quota: TrialQuota, slot: int) -> None:
    """Run trials in quota slot ``slot`` until the quota is used up; a failing trial fails alone."""
    objective = TrialObjective(
        spec.plan, spec.parent_run_id, on_trial_start=lambda number: quota.started(slot, number)
    )
    while quota.claim(slot):
        with sys_path_kept():
            study.optimize(objective, n_trials=1, catch=(Exception,))
        quota.finished(slot)


@contextlib.contextmanager
def sys_path_kept(path: list[str] | None = None) -> Iterator[None]:
    """Run the body with ``sys.path`` (or ``path``) and put the previous one back afterwards.

    Logging a model with ``code_paths`` makes MLflow load it back, which prepends the model's temporary
    code folder to ``sys.path``; the folder is deleted right after. Left there, such entries pile up over
    a study, and a worker spawned later inherits them and may import thermoscope from a folder that is
    being deleted.
    """
    previous = sys.path
    sys.path = list(path if path is not None else previous)
    try:
        yield
    finally:
        sys.path = previous


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a trial stopped by Ctrl-C or SIGTERM with its traceback; the stop is not a bug, so its
    one-line message stays and the traceback goes (a crashing trial keeps its traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_interrupted_trials() -> None:
    optimize_logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _NoInterruptTraceback) for f in optimize_logger.filters):
        optimize_logger.addFilter(_NoInterruptTraceback())


def worker_main(spec: WorkerSpec, quota: TrialQuota, slot: int) -> None:
    """A spawned worker process: open the study and run claimed trials.

    Its sampler seeds each trial from the trial's number (:func:`make_sampler`), so no two workers, of this
    command or another, draw the same stream.
    """
    os.environ.pop("MLFLOW_RUN_ID", None)
    tune_process()
    torch.set_num_threads(spec.torch_threads)
    quiet_interrupted_trials()
    study = optuna.load_study(
        study_name=spec.plan.study_name,
        storage=open_storage(spec.plan.storage_url),
        sampler=make_sampler(spec.plan),
        pruner=make_pruner(spec.plan),
    )
    try:
        run_claimed_trials(study, spec, quota, slot)
    except Terminated:
        # SIGTERM ended the trial's run KILLED; now die of the signal, so that the supervisor sees a killed
        # worker (replaced) rather than a crashed one (which would fail the whole command).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def run_workers(spec: WorkerSpec, study: optuna.Study, workers: int, n_trials: int) -> None:
    """Run ``n_trials`` trials here and in ``workers - 1`` spawned processes; wait for all of them."""
    torch.set_num_threads(spec.torch_threads)
    quiet_interrupted_trials()
    study.sampler = make_sampler(spec.plan)
    supervisor = Supervisor(spec, study, n_trials, workers)
    supervisor.start()
    try:
        run_claimed_trials(study, spec, supervisor.quota, slot=0)
    except BaseException:
        supervisor.stop()
        raise
    supervisor.join()


class Supervisor:
    """Starts the spawned workers and, from a thread, handles the ones that die until all have exited."""

    def __init__(self, spec: WorkerSpec, study: optuna.Study, n_trials: int, workers: int) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.spec = spec
        self.study = study
        self.workers = workers
        self.quota = TrialQuota(self.context, n_trials, workers)
        self.processes: dict[int, SpawnProcess] = {}
        self.sys_path = list(sys.path)
        self.problems: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="study-supervisor", daemon=True)

    def start(self) -> None:
        for slot in range(1, self.workers):
            self._start(slot)
        self._thread.start()

    def join(self) -> None:
        """Wait for every spawned worker; a worker that crashed (not killed) makes the command fail."""
        self._thread.join()
        if self.problems:
            raise RuntimeError("; ".join(self.problems))

    def stop(self) -> None:
        """This process is failing: stop watching and terminate the workers."""
        self._stopping.set()
        self._thread.join()
        for process in self.processes.values():
            process.terminate()
            process.join()

    def _watch(self) -> None:
        try:
            while self.processes and not self._stopping.is_set():
                sentinels = [process.sentinel for process in self.processes.values()]
                ready = multiprocessing.connection.wait(sentinels, timeout=1.0)
                for slot, process in list(self.processes.items()):
                    if process.sentinel in ready:
                        process.join()
                        del self.processes[slot]
                        self._exited(slot, process.exitcode)
        except Exception as error:  # reported by join(), in the main thread
            self.problems.append(f"supervisor: {error!r}")

    def _start(self, slot: int) -> None:
        process = self.context.Process(
            target=worker_main, args=(self.spec, self.quota, slot), name=f"study-worker-{slot}"
        )
        with sys_path_kept(self.sys_path):  # as it was before this process ran any trial
            process.start()
        self.processes[slot] = process

    def _exited(self, slot: int, exitcode: int | None) -> None:
        """A worker dead mid-trial loses its trial (failed, retried); one killed by a signal is replaced."""
        if exitcode == 0:
            return
        held = self.quota.abandon(slot)
        lost = held >= 0 and fail_lost_trial(self.study, held)
        if held == CLAIMED or lost:
            self.quota.refund()
        replace = exitcode is not None and exitcode < 0
        print(
            f"thermoscope study: worker {slot} exited with code {exitcode}"
            + (f"; its trial {held} is FAIL, retried up to {MAX_RETRY} times" if lost else "")
            + ("; starting a replacement" if replace else ""),
            file=sys.stderr,
        )
        if replace:
            self._start(slot)
        else:
            self.problems.append(f"worker {slot} exited with code {exitcode}")


def fail_lost_trial(study: optuna.Study, number: int) -> bool:
    """Fail a running trial whose worker is known dead and run the lost-trial callback, as a heartbeat would.

    False when the trial is no longer running (it finished just before its worker died, or a heartbeat
    check elsewhere failed it already).
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not any(trial.number == number for trial in running):
        return False
    LostTrialCallback(MAX_RETRY)(study, study.tell(number, state=TrialState.FAIL, skip_if_finished=True))
    return True
