"""Scheduling: one queue per run, longest job first (remembered build times, else model size);
every host slot is a thread that takes the next jobs it may build, so work moves to whichever host
frees first. Environment failures and lost hosts are retried on another host of the pool
(bounded); build failures are not."""
from __future__ import annotations

import threading
from typing import Callable, Mapping

from fleetbuild.plan.planner import PlannedJob
from fleetbuild.report.results import JobResult
from fleetbuild.store.api import StoreError

RETRYABLE = ("environment", "unreachable", "transfer")
MAX_BATCH = 8
STOP_SECONDS = 60           # how long an interrupted run waits for its host threads to report


class JobQueue:
    """Pending jobs, longest first; a host takes the first jobs it may build and has not failed."""

    def __init__(self, jobs: list[PlannedJob], eligible: Mapping[str, list[str]], estimates: Mapping[str, float]):
        def estimate(job: PlannedJob) -> float:
            known = estimates.get(job.plan_key or "")
            return known if known is not None else 0.001 * job.target.cc[0]
        self._pending = sorted(jobs, key=estimate, reverse=True)
        self._eligible = {k: list(v) for k, v in eligible.items()}
        self._attempts: dict[str, int] = {}
        self._failures: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._in_flight = 0
        self._closed = False
        self._taken: dict[str, PlannedJob] = {}
        self.slots = 1

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, host: str) -> list[PlannedJob]:
        """The next jobs for `host`: what it may still build divided by (host slots + 1), at most
        MAX_BATCH (big batches while the queue is long, single jobs at the tail so the last jobs
        still go to whichever host frees first; bench/dispatch.py measured this split). When
        nothing is pending for the host but jobs are still running elsewhere, wait: one may come
        back for a retry."""
        with self._cond:
            while True:
                if self._closed:
                    return []
                mine = [i for i, job in enumerate(self._pending) if host in self._eligible[job.job.id]]
                if mine:
                    break
                if self._in_flight == 0:
                    return []
                self._cond.wait(1.0)
            size = max(1, min(MAX_BATCH, len(mine) // (self.slots + 1)))
            taken = [self._pending[i] for i in mine[:size]]
            for index in reversed(mine[:size]):
                self._pending.pop(index)
            for job in taken:
                self._attempts[job.job.id] = self._attempts.get(job.job.id, 0) + 1
                self._taken[job.job.id] = job
            self._in_flight += len(taken)
            return taken

    def done(self, count: int) -> None:
        with self._cond:
            self._in_flight -= count
            self._cond.notify_all()

    def taken(self) -> list[PlannedJob]:
        with self._lock:
            return list(self._taken.values())

    def attempts(self, job_id: str) -> int:
        return self._attempts.get(job_id, 0)

    def retry(self, job: PlannedJob, failed_host: str, reason: str) -> None:
        with self._cond:
            self._eligible[job.job.id] = [h for h in self._eligible[job.job.id] if h != failed_host]
            self._failures.setdefault(job.job.id, []).append(reason)
            self._pending.insert(0, job)
            self._cond.notify_all()

    def leftovers(self) -> list[tuple[PlannedJob, str]]:
        return [(job, "no host left to build it (" + "; ".join(self._failures.get(job.job.id, [])) + ")")
                for job in self._pending]


class Scheduler:
    """Runs the queue on host slots. `run_batch(host, jobs)` builds jobs on a host and returns one
    result per job; `record(job, result)` receives each final result (retried attempts are not
    final). `host_lost(host)` is called when a result says the host is gone."""

    def __init__(self, queue: JobQueue, run_batch: Callable[[str, list[PlannedJob]], list[JobResult]],
                 record: Callable[[PlannedJob, JobResult], None], host_lost: Callable[[str], None],
                 is_down: Callable[[str], bool], notify: Callable[[str], None], interrupted: threading.Event,
                 max_attempts: int = 2) -> None:
        self.queue, self.run_batch, self.record, self.host_lost = queue, run_batch, record, host_lost
        self.is_down, self.notify, self.interrupted, self.max_attempts = is_down, notify, interrupted, max_attempts
        self.store_error: StoreError | None = None      # the first: the store cannot take engines, so no more batches

    def run(self, slots: Mapping[str, int], on_interrupt: Callable[[], None]) -> None:
        """One thread per host slot until the queue is empty. A KeyboardInterrupt in the calling
        (main) thread calls on_interrupt() and waits up to STOP_SECONDS for the threads to report."""
        self.queue.slots = max(1, sum(slots.values()))
        threads = [threading.Thread(target=self._host_loop, args=(name,), name=f"{name}#{slot}", daemon=True)
                   for name in sorted(slots) for slot in range(slots[name])]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            on_interrupt()
            for thread in threads:
                thread.join(STOP_SECONDS)

    def _host_loop(self, name: str) -> None:
        while not self.is_down(name) and self.store_error is None:
            batch = self.queue.take(name)
            if not batch:
                return
            try:
                outcomes = self.run_batch(name, batch)
            except StoreError as err:  # full, read-only, gone: every later job would fail the same way
                if self.store_error is None:
                    self.store_error = err
                    self.notify(f"stopping: the store cannot take engines: {err}")
                outcomes = [JobResult(p.job.id, p.target.name, "failed", host=name, kind="store",
                                      reason=f"built, not stored: {err}") for p in batch]
            except Exception as err:   # a bug must not lose jobs: report them, keep the run going
                outcomes = [JobResult(p.job.id, p.target.name, "failed", host=name, kind="internal",
                                      reason=f"internal error: {type(err).__name__}: {err}") for p in batch]
            try:
                for planned, result in zip(batch, outcomes):
                    self._settle(name, planned, result)
            finally:
                self.queue.done(len(batch))

    def _settle(self, name: str, planned: PlannedJob, result: JobResult) -> None:
        attempts = self.queue.attempts(planned.job.id)
        result.attempts = attempts
        if self.interrupted.is_set() and result.status != "built":
            result.kind, result.reason = "interrupted", "interrupted while building"
        elif result.status == "failed" and result.kind in RETRYABLE and attempts < self.max_attempts:
            if result.kind == "unreachable":
                self.host_lost(name)
            self.queue.retry(planned, name, f"{name}: {result.reason}")
            self.notify(f"retrying {planned.job.id} elsewhere: {name}: {result.reason}")
            return
        self.record(planned, result)
