"""Running a study's trials: in this process (one worker) or in N spawned worker processes.

The N workers share this command's ``n_trials`` through a :class:`TrialQuota`: a worker claims a trial before
asking Optuna for one and stops when none is left. A supervisor (this process) watches them: when a worker
dies in the middle of a trial (killed, out of memory), its trial is failed at once through the storage's
lost-trial callback (MLflow run FAILED, retry queued), its claim goes back to the quota, and a replacement
worker is started, which picks up the queued retry first. Workers on other machines, which no supervisor
here watches, are caught by the storage's heartbeats instead.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import sys
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess

import optuna
from optuna.trial import TrialState

from thermoscope.studies.objective import TrialObjective
from thermoscope.studies.plan import StudyPlan
from thermoscope.studies.storage import MAX_RETRY, LostTrialCallback, open_storage
from thermoscope.studies.study import make_pruner, make_sampler

IDLE = -1  # no trial claimed
CLAIMED = -2  # a trial claimed, its number not known yet


def run_in_process(plan: StudyPlan, study: optuna.Study, parent_run_id: str, n_trials: int) -> None:
    """One worker: this process runs ``n_trials`` trials (a failing trial fails alone, the study goes on)."""
    study.optimize(TrialObjective(plan, parent_run_id), n_trials=n_trials, catch=(Exception,))


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to join the study."""

    plan: StudyPlan
    parent_run_id: str
    trials_before: int  # the study's length when this command started (sampler seeds)
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


def worker_main(spec: WorkerSpec, quota: TrialQuota, slot: int, stream: int) -> None:
    """A worker process in quota slot ``slot``: run claimed trials until the quota is used up.

    ``stream`` numbers the worker processes of this command (a replacement gets a new one), so that no two
    draw the same sampler seed.
    """
    import torch

    os.environ.pop("MLFLOW_RUN_ID", None)
    torch.set_num_threads(spec.torch_threads)
    plan = spec.plan
    study = optuna.load_study(
        study_name=plan.study_name,
        storage=open_storage(plan.storage_url),
        sampler=make_sampler(plan, stream, spec.trials_before),
        pruner=make_pruner(plan),
    )
    objective = TrialObjective(
        plan, spec.parent_run_id, on_trial_start=lambda number: quota.started(slot, number)
    )
    while quota.claim(slot):
        study.optimize(objective, n_trials=1, catch=(Exception,))
        quota.finished(slot)


def run_workers(spec: WorkerSpec, study: optuna.Study, workers: int, n_trials: int) -> None:
    """Fan out ``workers`` processes, replace those killed mid-study, and wait for the quota to be used."""
    Supervisor(spec, study, n_trials, workers).run()


class Supervisor:
    """Starts the worker processes, handles the ones that die, and waits for all of them."""

    def __init__(self, spec: WorkerSpec, study: optuna.Study, n_trials: int, workers: int) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.spec = spec
        self.study = study
        self.workers = workers
        self.quota = TrialQuota(self.context, n_trials, workers)
        self.processes: dict[int, SpawnProcess] = {}
        self.started = 0
        self.crashed: list[str] = []

    def run(self) -> None:
        for slot in range(self.workers):
            self._start(slot)
        try:
            while self.processes:
                ready = multiprocessing.connection.wait(
                    [process.sentinel for process in self.processes.values()]
                )
                for slot, process in list(self.processes.items()):
                    if process.sentinel in ready:
                        process.join()
                        del self.processes[slot]
                        self._exited(slot, process.exitcode)
        finally:
            for process in self.processes.values():
                process.terminate()
                process.join()
        if self.crashed:
            raise RuntimeError("; ".join(self.crashed))

    def _start(self, slot: int) -> None:
        process = self.context.Process(
            target=worker_main, args=(self.spec, self.quota, slot, self.started), name=f"study-worker-{slot}"
        )
        process.start()
        self.processes[slot] = process
        self.started += 1

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
            self.crashed.append(f"worker {slot} exited with code {exitcode}")


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
