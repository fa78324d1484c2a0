"""matrix build: match probed hosts to jobs, look up the build cache, stage, and run batches of jobs
on host sessions under the scheduler; verify and store what comes back.

Modules: probe.py (hosts, worker, facts), session.py (one host: SSH master, batches), scheduler.py
(queue, slots, retries), cache.py (build cache in the store). This one joins them for a build.
"""
from __future__ import annotations

import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from fleetbuild.remote.buildkey import build_key
from fleetbuild.build.dispatch import shell
from fleetbuild.build.cache import BuildCache
from fleetbuild.build.hostfacts import hardware_problem, job_problem, layer_problem, tensorrt_of
from fleetbuild.build.dispatch.probe import Prober
from fleetbuild.build.dispatch.scheduler import JobQueue, Scheduler
from fleetbuild.build.dispatch.session import Batch, HostSession, RECONNECT_SECONDS, worker_start_failure
from fleetbuild.build.dispatch.transport import TransferError
from fleetbuild.errors import FleetbuildError
from fleetbuild.filehash import sha256_file, write_json_atomic
from fleetbuild.build.hosts import Inventory
from fleetbuild.plan.planner import Plan, PlannedJob
from fleetbuild.report.events import Events
from fleetbuild.report.results import JobResult, tensorrt_text
from fleetbuild.build.staging import StagedJob, Stager


class Dispatcher(Prober):
    def __init__(self, plan: Plan, plugins: Any, inventory: Inventory, store: Any, cache_dir: Path,
                 env: Mapping[str, str], inspector: Any, events: Events | None = None,
                 max_attempts: int = 2) -> None:
        self.events = events or Events()
        super().__init__(inventory, cache_dir, env, notify=self.events.notice)
        self.plan, self.plugins, self.store = plan, plugins, store
        self.inspector, self.max_attempts = inspector, max_attempts
        self.cache = BuildCache(store, inspector.hasher, self.notify)
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.local_root = cache_dir / "runs" / self.run_id
        self.interrupted = threading.Event()
        self.store_error: Exception | None = None      # set by build() when the store refused an engine
        self._inflight: dict[str, tuple[HostSession, str]] = {}     # job id -> (host, remote out dir)
        self._started: dict[str, float] = {}
        self._batches: dict[str, tuple[HostSession, Batch]] = {}     # batch dir -> (host, batch)
        self._batch_numbers = itertools.count(1)
        self._inflight_lock = threading.Lock()
        self._staged: Mapping[str, StagedJob] = {}
        self._plugin_files: dict[str, Path] = {}                   # sha256 -> controller path, per build
        self._results: dict[str, JobResult] = {}
        self.finished: list[JobResult] = []
        self.total = 0
        self._stager: Stager | None = None
        self.manifests: dict[str, Mapping[str, Any]] = {}      # job id -> manifest, cached or built

    def stager(self) -> Stager:
        if self._stager is None:
            self._stager = Stager(self.plan, self.local_root / "stage", self.cache_dir, self.inspector,
                                  jobs_dir=f"jobs/{self.run_id}")
        return self._stager

    def _eligible_hosts(self, planned: PlannedJob) -> tuple[list[str], list[str]]:
        """(names of hosts that can build the job, reasons for the others)."""
        names, reasons = [], []
        for host in self.inventory.group(planned.target.inventory_group):
            state = self.hosts.get(host.name)
            problem = (state.problem if state is None or state.problem else
                       hardware_problem(state.facts, planned.target) or
                       job_problem(state.facts, planned.target, planned.job.options.backend) or
                       layer_problem(state.facts, planned.key_parts, planned.job.options.backend))
            if state is None:
                problem = "not probed"
            if problem:
                reasons.append(f"{host.name}: {problem}")
            else:
                names.append(host.name)
        return names, reasons

    def cached(self, jobs: list[PlannedJob], rebuild: Any = None) -> tuple[list[JobResult], list[PlannedJob]]:
        """Jobs whose engine is already in the store, for the TensorRT of a host that could build them
        (as results with status "cached"), and the jobs left to build. `rebuild` is a Selector of
        jobs that must be built again."""
        hits, misses = [], []
        for planned in jobs:
            if rebuild is not None and rebuild.selects(planned.job.id):
                misses.append(planned)
                continue
            names, _ = self._eligible_hosts(planned)
            hit = None
            if names and planned.key_parts is not None:
                parts = self.stager().key_parts(planned)
                for name in names:
                    key = build_key(parts, self._tensorrt(self.hosts[name].facts, planned))
                    hit = self.cache.lookup(key, planned.job.id)
                    if hit is not None:
                        break
            if hit is None:
                misses.append(planned)
            else:
                self.manifests[planned.job.id] = hit
                hits.append(JobResult(planned.job.id, planned.target.name, "cached", engine_size=hit["engine"]["size"],
                                      build_key=hit["build_key"], tensorrt=tensorrt_text(hit), kind=None))
        return hits, misses

    @staticmethod
    def _tensorrt(facts: Mapping[str, Any], planned: PlannedJob) -> dict[str, str]:
        backend = planned.job.options.backend
        return {"flavor": "tensorrt-rtx" if backend == "tensorrt-rtx" else "tensorrt",
                "version": tensorrt_of(facts, backend) or "", "compute_capability": planned.target.compute_capability}

    def build(self, jobs: list[PlannedJob]) -> list[JobResult]:
        results = self._results = {}
        eligible: dict[str, list[str]] = {}
        for planned in jobs:
            target = planned.target
            pool = self.inventory.group(target.inventory_group)
            names, reasons = self._eligible_hosts(planned)
            if not pool:
                results[planned.job.id] = JobResult(planned.job.id, target.name, "failed", kind="no-host",
                                                    reason=self.inventory.empty_group(target.inventory_group))
            elif not names:
                results[planned.job.id] = JobResult(planned.job.id, target.name, "failed", kind="no-host",
                                                    reason="no host can build it (" + "; ".join(reasons) + ")")
            else:
                eligible[planned.job.id] = names
        to_run = [j for j in jobs if j.job.id in eligible]
        self.total = len(to_run)
        self._staged = {s.job_id: s for s in self.stager().stage(to_run)} if to_run else {}
        # every plugin library a build may need, stored beside the engines that name it
        self._plugin_files = {self.inspector.hasher.sha256(lib.path): lib.path
                              for provider in self.plan.layers.values() for lib in provider.libraries}
        queue = JobQueue(to_run, eligible, self._estimates())
        scheduler = Scheduler(queue, self._run_batch, self._record, self._host_lost,
                              lambda name: self.hosts[name].down, self.notify, self.interrupted, self.max_attempts)
        hosts = sorted({h for names in eligible.values() for h in names})
        scheduler.run({name: self.hosts[name].host.slots for name in hosts}, lambda: self.interrupt(queue))
        for planned in queue.taken():
            if planned.job.id not in results:   # its thread did not report within STOP_SECONDS
                results[planned.job.id] = JobResult(
                    planned.job.id, planned.target.name, "failed",
                    kind="interrupted" if self.interrupted.is_set() else "internal",
                    reason="interrupted while building" if self.interrupted.is_set() else "no result was reported")
        self.store_error = scheduler.store_error
        for planned, reason in queue.leftovers():
            kind = "interrupted" if self.interrupted.is_set() else "store" if self.store_error else "no-host"
            reason = {"interrupted": "not started: interrupted",
                      "store": "not started: the store cannot take engines"}.get(kind, reason)
            results[planned.job.id] = JobResult(planned.job.id, planned.target.name, "failed", kind=kind, reason=reason)
        self._remember([r for r in results.values() if r.status == "built"])
        return [results[j.job.id] for j in jobs if j.job.id in results]

    def _host_lost(self, name: str) -> None:
        self.hosts[name].down = True

    def _record(self, planned: PlannedJob, result: JobResult) -> None:
        self._results[planned.job.id] = result
        self.finished.append(result)
        self.plugins.after_build(planned.job.id, result)
        self.events.job_finished(result)

    def _run_batch(self, name: str, batch: list[PlannedJob]) -> list[JobResult]:
        """Upload, build and fetch several jobs in one detached batch on one host session."""
        state = self.hosts[name]
        host, started = state.host, time.time()
        stage_root = self.local_root / "stage"
        results, runnable, specs, inputs, commands = [], [], [], [], []
        for planned in batch:
            result = JobResult(planned.job.id, planned.target.name, "failed", host=host.name)
            results.append(result)
            try:
                self.plugins.before_build(planned.job.id, host.name)
            except FleetbuildError as err:
                result.kind, result.reason = "plugin", str(err)
                continue
            staged = self._staged[planned.job.id]
            spec = str(staged.spec.relative_to(stage_root))
            specs.append(spec)
            inputs += [str(p.relative_to(stage_root)) for p in staged.inputs]      # by content: sent once per host
            out = spec.rsplit("/", 1)[0] + "/out"
            runnable.append((planned, result, out))
            commands.append([host.python, state.worker, "build", "--spec", f"{state.workdir}/{spec}",
                             "--out", f"{state.workdir}/{out}"])
        if not runnable:
            return results
        job = Batch(f"batches/{self.run_id}-{next(self._batch_numbers)}",
                    shell.sequence(commands, env=host.env, final="true"), self.local_root / "fetched",
                    upload_root=stage_root, upload=specs, by_content=list(dict.fromkeys(inputs)),
                    fetch=[out for _, _, out in runnable], keep_alive=True)
        with self._inflight_lock:
            if self.interrupted.is_set():
                for _, result, _ in runnable:
                    result.kind, result.reason = "interrupted", "not started: interrupted"
                return results
            for planned, _, out in runnable:
                self._inflight[planned.job.id] = (state, f"{state.workdir}/{out}")
                self._started[planned.job.id] = time.time()
            self._batches[job.directory] = (state, job)
        try:
            log = state.run_batch(job, self.interrupted)
        except TransferError as err:
            for _, result, _ in runnable:
                result.kind, result.reason = "transfer", str(err)
            return results
        finally:
            with self._inflight_lock:
                for planned, *_ in runnable:
                    self._inflight.pop(planned.job.id, None)
                self._batches.pop(job.directory, None)
        if self.interrupted.is_set():
            for _, result, _ in runnable:
                result.kind, result.reason = "interrupted", "interrupted while building"
            return results
        if log is None:
            for _, result, _ in runnable:
                result.kind = "unreachable"
                result.reason = f"lost the connection for {RECONNECT_SECONDS} s while building"
            return results
        steps = shell.statuses(log)
        for index, (planned, result, out) in enumerate(runnable):
            self._finish(result, self.local_root / "fetched" / out, log, steps.get(index), host.python)
            result.seconds = round(time.time() - started, 2)
        return results

    def _finish(self, result: JobResult, local_out: Path, log: str, status: int | None, python: str) -> None:
        """Read a fetched job's outcome; verify and store its engine. `log`: the batch's output."""
        if not (local_out / "result.json").exists():
            result.kind, result.reason = "environment", worker_start_failure(status, log, python)
            return
        outcome = json.loads((local_out / "result.json").read_text())
        log = (local_out / "build.log").read_text(errors="replace").splitlines() if (local_out / "build.log").exists() else []
        result.log_tail = log[-20:]
        result.worker_seconds = outcome.get("seconds")
        if outcome.get("status") != "ok":
            result.kind, result.reason = outcome.get("kind"), outcome.get("reason")
            return
        manifest = json.loads((local_out / "manifest.json").read_text())
        engine = local_out / manifest["engine"]["file"]
        digest = sha256_file(engine)
        if digest != manifest["engine"]["sha256"] or digest != outcome["engine"]["sha256"]:
            result.kind, result.reason = "transfer", "engine checksum mismatch after fetch"
            return
        self.cache.store_build(engine, digest, manifest, self._plugin_files)
        self.manifests[result.job_id] = manifest
        result.status, result.kind = "built", None
        result.engine_size, result.build_key = engine.stat().st_size, manifest["build_key"]
        result.tensorrt = tensorrt_text(manifest)

    def running(self) -> list[tuple[str, HostSession, str, float]]:
        """(job id, host, remote output dir, start time) of the jobs on hosts right now."""
        with self._inflight_lock:
            return [(job, state, out, self._started.get(job, time.time()))
                    for job, (state, out) in self._inflight.items()]

    def remote_status(self, state: HostSession, outs: list[str]) -> dict[str, Any]:
        """The workers' status.json of `outs` on one host (one SSH round trip)."""
        proc = state.run(shell.command([state.host.python, state.worker, "status", *outs], env=state.host.env))
        try:
            return json.loads(proc.stdout.decode()) if proc.returncode == 0 else {}
        except ValueError:
            return {}

    def interrupt(self, queue: JobQueue) -> None:
        """Ctrl-C / SIGTERM: no new jobs, stop ansible, stop the running batches (their process
        groups on the hosts). Batches registered after the flag is set never start (see _run_batch)."""
        with self._inflight_lock:
            self.interrupted.set()
            batches = list(self._batches.values())
        queue.close()
        self.ansible.cancel()
        for state, batch in batches:
            state.stop(batch)

    # ---- remembered build times -----------------------------------------------------------------
    def _estimates(self) -> dict[str, float]:
        try:
            return json.loads((self.cache_dir / "build-times.json").read_text())
        except (OSError, ValueError):
            return {}

    def _remember(self, built: list[JobResult]) -> None:
        times = self._estimates()
        for planned in self.plan.jobs:
            match = next((r for r in built if r.job_id == planned.job.id), None)
            if match is not None and planned.plan_key:
                times[planned.plan_key] = match.seconds
        try:
            write_json_atomic(self.cache_dir / "build-times.json", times)
        except OSError:
            pass
