"""matrix build: probe hosts, match them to jobs, stage, schedule, run the worker, fetch, verify, store.

Scheduling: one queue per target pool, longest job first (remembered build times, else model
size); every host slot is a thread that takes the next job it can build, so work moves to
whichever host frees first. Environment failures and unreachable hosts are retried on another
host of the pool (bounded); build failures are not. Each job is one `raw` play (the worker) plus
tar transfers over the inventory's SSH settings.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from fleetbuild.bundle import build_zipapp
from fleetbuild.dispatch import shell
from fleetbuild.dispatch.ansible import AnsibleRunner, parse_json_stdout
from fleetbuild.buildkey import build_key
from fleetbuild.dispatch.hostfacts import hardware_problem, job_problem, tensorrt_of
from fleetbuild.dispatch.transport import TransferError, Transport
from fleetbuild.errors import FleetbuildError
from fleetbuild.filehash import sha256_file, write_json_atomic
from fleetbuild.hosts import Host, Inventory
from fleetbuild.plan import Plan, PlannedJob
from fleetbuild.report import Events
from fleetbuild.results import JobResult, tensorrt_text
from fleetbuild.staging import StagedJob, Stager

RETRYABLE = ("environment", "unreachable", "transfer")
MAX_BATCH = 8
RECONNECT_SECONDS = 20      # how long a lost host may take to come back before its jobs move
RUN_DIR_DAYS = 2            # per-run directories on hosts older than this are removed at the next probe


@dataclass
class HostState:
    host: Host
    transport: Transport
    workdir: str | None = None
    worker: str | None = None
    facts: dict[str, Any] | None = None
    problem: str | None = None
    down: bool = False


class Prober:
    """Puts the worker on hosts and runs its probe on all of them in one Ansible run."""

    def __init__(self, inventory: Inventory, cache_dir: Path, env: Mapping[str, str]) -> None:
        self.inventory, self.cache_dir, self.env = inventory, cache_dir, env
        self.control_dir = control_dir()
        self.ansible = AnsibleRunner(inventory.path, env, control_dir=self.control_dir)
        self.zipapp, self.zipapp_sha = build_zipapp_to(cache_dir)
        self.hosts: dict[str, HostState] = {}

    def probe(self, hosts: list[Host]) -> dict[str, HostState]:
        states = {h.name: HostState(h, Transport(h, self.control_dir)) for h in hosts}
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(states)))) as pool:
            list(pool.map(self._prepare, states.values()))
        ready = {name: s for name, s in states.items() if s.problem is None}
        commands = {name: shell.command([s.host.python, s.worker, "probe"], env=s.host.env) for name, s in ready.items()}
        if commands:
            for name, result in self.ansible.run(commands, timeout=300).items():
                facts = parse_json_stdout(result) if result.ok else None
                if facts is None:
                    states[name].problem = (worker_start_failure(result.rc, result.stdout + result.stderr,
                                                                 states[name].host.python)
                                            if not result.ok and not result.unreachable else
                                            result.reason() if not result.ok else "probe printed no JSON")
                    states[name].down = result.unreachable
                else:
                    states[name].facts = facts
                    states[name].problem = python_problem(facts, states[name].host.python)
                    try:
                        write_json_atomic(self.cache_dir / "facts" / f"{name}.json",
                                          {"probed": time.time(), "facts": facts})
                    except OSError:
                        pass
        self.hosts.update(states)
        return states

    def _prepare(self, state: HostState) -> None:
        """Resolve the work dir and put the worker zipapp there (once per zipapp version)."""
        try:
            # Run directories (specs, outputs, batch logs) older than RUN_DIR_DAYS go; inputs and the
            # worker stay (content-addressed, shared by every run).
            proc = state.transport.run(
                f"mkdir -p {shell.path(state.host.workdir)} && cd {shell.path(state.host.workdir)} && "
                f"{{ find jobs batches -mindepth 1 -maxdepth 1 -mtime +{RUN_DIR_DAYS - 1} -exec rm -rf {{}} + "
                "2>/dev/null; true; } && pwd")
            if proc.returncode != 0:
                state.problem = f"cannot reach or prepare {state.host.workdir}: " + Transport._stderr(proc)
                state.down = proc.returncode == 255
                return
            state.workdir = proc.stdout.decode().strip().splitlines()[-1]
            name = f"worker/fleetbuild-remote-{self.zipapp_sha[:16]}.pyz"
            state.transport.put(self.zipapp.parent, [self.zipapp.name], f"{state.workdir}/worker/tmp-{self.zipapp_sha[:16]}")
            state.transport.run(f"mv -n {shell.path(state.workdir + '/worker/tmp-' + self.zipapp_sha[:16] + '/' + self.zipapp.name)} "
                                f"{shell.path(state.workdir + '/' + name)}")
            state.worker = f"{state.workdir}/{name}"
        except FleetbuildError as err:
            state.problem = str(err)

    def close(self) -> None:
        """End every SSH master this run opened (fleetbuild's and Ansible's)."""
        for state in self.hosts.values():
            state.transport.close()
        self.ansible.close()


    def load_cached(self, hosts: list[Host], max_age: float) -> dict[str, HostState] | None:
        """HostStates from facts probed less than `max_age` seconds ago (no SSH), or None when any
        host has no such facts."""
        states = {}
        for host in hosts:
            try:
                cached = json.loads((self.cache_dir / "facts" / f"{host.name}.json").read_text("utf-8"))
            except (OSError, ValueError):
                return None
            if time.time() - cached.get("probed", 0) > max_age:
                return None
            state = HostState(host, Transport(host, self.control_dir), facts=cached["facts"])
            state.problem = python_problem(cached["facts"], host.python)
            states[host.name] = state
        self.hosts.update(states)
        return states


class Dispatcher(Prober):
    def __init__(self, plan: Plan, plugins: Any, inventory: Inventory, store: Any, cache_dir: Path,
                 env: Mapping[str, str], inspector: Any, events: Events | None = None,
                 max_attempts: int = 2) -> None:
        super().__init__(inventory, cache_dir, env)
        self.plan, self.plugins, self.store = plan, plugins, store
        self.events = events or Events()
        self.inspector, self.notify, self.max_attempts = inspector, self.events.notice, max_attempts
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.local_root = cache_dir / "runs" / self.run_id
        self.interrupted = threading.Event()
        self._inflight: dict[str, tuple[HostState, str]] = {}     # job id -> (host, remote out dir)
        self._started: dict[str, float] = {}
        self._batches: dict[str, tuple[HostState, int]] = {}       # remote batch dir -> (host, pid)
        self._batch_numbers = itertools.count(1)
        self._inflight_lock = threading.Lock()
        self.finished: list[JobResult] = []
        self.total = 0
        self._stager: Stager | None = None
        self.signer: Any = None
        self.manifests: dict[str, Mapping[str, Any]] = {}      # job id -> manifest, cached or built
        self.verify = False                                     # hash every cached engine in full

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
                       job_problem(state.facts, planned.target, planned.job.options.backend))
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
                    hit = self._lookup(key, planned.job.id)
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

    def _lookup(self, key: str, job_id: str = "") -> dict[str, Any] | None:
        """The manifest of build `key` when its engine is in the store and intact (size always; the
        full hash on a local store, or everywhere with verify); a bad engine is quarantined."""
        from fleetbuild.store.api import NotFound
        from fleetbuild.store.blobs import check_blob, quarantine

        try:
            manifest = json.loads(self.store.read_bytes(f"builds/{key}.json")[0])
            engine = manifest["engine"]
        except (NotFound, ValueError, KeyError, TypeError):
            return None
        problem = check_blob(self.store, engine["sha256"], engine.get("size"), self.inspector.hasher, self.verify)
        if problem == "missing":
            return None
        if problem is not None:
            moved = quarantine(self.store, engine["sha256"])
            self.notify(f"the stored engine of {job_id or key} is corrupted ({problem}): moved to {moved}, "
                        "building it again")
            return None
        return manifest

    def build(self, jobs: list[PlannedJob]) -> list[JobResult]:
        results: dict[str, JobResult] = {}
        stager = self.stager()
        eligible: dict[str, list[str]] = {}
        for planned in jobs:
            target = planned.target
            pool = self.inventory.group(target.inventory_group)
            names, reasons = self._eligible_hosts(planned)
            if not pool:
                results[planned.job.id] = JobResult(planned.job.id, target.name, "failed", kind="no-host",
                                                    reason=f"no hosts in inventory group '{target.inventory_group}'")
            elif not names:
                results[planned.job.id] = JobResult(planned.job.id, target.name, "failed", kind="no-host",
                                                    reason="no host can build it (" + "; ".join(reasons) + ")")
            else:
                eligible[planned.job.id] = names
        to_run = [j for j in jobs if j.job.id in eligible]
        self.total = len(to_run)
        staged = {s.job_id: s for s in stager.stage(to_run)} if to_run else {}
        queue = JobQueue(to_run, eligible, self._estimates())
        queue.slots = max(1, sum(self.hosts[n].host.slots for n in {h for names in eligible.values() for h in names}))
        threads = []
        for name in sorted({h for names in eligible.values() for h in names}):
            for slot in range(self.hosts[name].host.slots):
                thread = threading.Thread(target=self._host_loop, args=(name, queue, staged, results),
                                          name=f"{name}#{slot}", daemon=True)
                threads.append(thread)
                thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            self.interrupt(queue)
            for thread in threads:
                thread.join(60)
        for planned in queue.taken():
            if planned.job.id not in results:   # its thread did not report (see the issue 4 note)
                results[planned.job.id] = JobResult(
                    planned.job.id, planned.target.name, "failed",
                    kind="interrupted" if self.interrupted.is_set() else "internal",
                    reason="interrupted while building" if self.interrupted.is_set() else "no result was reported")
        for planned, reason in queue.leftovers():
            kind = "interrupted" if self.interrupted.is_set() else "no-host"
            results[planned.job.id] = JobResult(planned.job.id, planned.target.name, "failed", kind=kind,
                                                reason="not started: interrupted" if kind == "interrupted" else reason)
        self._remember([r for r in results.values() if r.status == "built"])
        return [results[j.job.id] for j in jobs if j.job.id in results]

    def _host_loop(self, name: str, queue: "JobQueue", staged: Mapping[str, StagedJob],
                   results: dict[str, JobResult]) -> None:
        state = self.hosts[name]
        while not state.down:
            batch = queue.take(name)
            if not batch:
                return
            try:
                outcomes = self._run_batch(batch, state, staged)
            except Exception as err:   # a bug must not lose jobs: report them, keep the run going
                outcomes = [JobResult(p.job.id, p.target.name, "failed", host=name, kind="internal",
                                      reason=f"internal error: {type(err).__name__}: {err}") for p in batch]
            try:
                self._record(name, state, queue, batch, outcomes, results)
            finally:
                queue.done(len(batch))

    def _record(self, name: str, state: HostState, queue: "JobQueue", batch: list[PlannedJob],
                outcomes: list[JobResult], results: dict[str, JobResult]) -> None:
        for planned, result in zip(batch, outcomes):
            attempts = queue.attempts(planned.job.id)
            result.attempts = attempts
            if self.interrupted.is_set() and result.status != "built":
                result.kind, result.reason = "interrupted", "interrupted while building"
            elif result.status == "failed" and result.kind in RETRYABLE and attempts < self.max_attempts:
                if result.kind == "unreachable":
                    state.down = True
                queue.retry(planned, name, f"{name}: {result.reason}")
                self.notify(f"retrying {planned.job.id} elsewhere: {name}: {result.reason}")
                continue
            results[planned.job.id] = result
            self.finished.append(result)
            self.plugins.after_build(planned.job.id, result)
            self.events.job_finished(result)

    def _run_batch(self, batch: list[PlannedJob], state: HostState,
                   staged: Mapping[str, StagedJob]) -> list[JobResult]:
        """Upload, build and fetch several jobs with one tar each way and one `raw` play."""
        host, started = state.host, time.time()
        stage_root = self.local_root / "stage"
        results, runnable, files, commands = [], [], [], []
        for planned in batch:
            result = JobResult(planned.job.id, planned.target.name, "failed", host=host.name)
            results.append(result)
            try:
                self.plugins.before_build(planned.job.id, host.name)
            except FleetbuildError as err:
                result.kind, result.reason = "plugin", str(err)
                continue
            job_files = [str(staged[planned.job.id].spec.relative_to(stage_root))] + [
                str(p.relative_to(stage_root)) for p in staged[planned.job.id].inputs]
            files += [f for f in job_files if f not in files]
            remote_spec = f"{state.workdir}/{job_files[0]}"
            remote_out = remote_spec.rsplit("/", 1)[0] + "/out"
            runnable.append((planned, result, job_files[0].rsplit("/", 1)[0] + "/out", remote_out))
            commands.append([host.python, state.worker, "build", "--spec", remote_spec, "--out", remote_out])
        if not runnable:
            return results
        line = shell.sequence(commands, env=host.env, final="true")
        batch_dir = f"{state.workdir}/batches/{self.run_id}-{next(self._batch_numbers)}"
        try:
            state.transport.put(stage_root, files, state.workdir)
            raw = self.ansible.run({host.name: shell.detached(batch_dir, line)})[host.name]
            if self.interrupted.is_set():      # it may have started after interrupt() looked: stop it too
                self._kill_batch(state, batch_dir)
                for _, result, _, _ in runnable:
                    result.kind, result.reason = "interrupted", "interrupted while starting"
                return results
            pid_text = raw.stdout.split(shell.BATCH_PID, 1)[1].split()[0] if shell.BATCH_PID in raw.stdout else ""
            if raw.unreachable or not raw.ok or not pid_text.isdigit():
                for _, result, _, _ in runnable:
                    result.kind = "unreachable" if raw.unreachable else "environment"
                    result.reason = raw.reason() if raw.unreachable else f"could not start the worker: {raw.reason()}"
                return results
            pid = int(pid_text)
            with self._inflight_lock:
                for planned, _, _, remote_out in runnable:
                    self._inflight[planned.job.id] = (state, remote_out)
                    self._started[planned.job.id] = time.time()
                self._batches[batch_dir] = (state, pid)
            try:
                log = self._wait_for_batch(state, batch_dir, pid)
            finally:
                with self._inflight_lock:
                    for planned, *_ in runnable:
                        self._inflight.pop(planned.job.id, None)
                    self._batches.pop(batch_dir, None)
            if self.interrupted.is_set():
                for _, result, _, _ in runnable:
                    result.kind, result.reason = "interrupted", "interrupted while building"
                return results
            if log is None:
                for _, result, _, _ in runnable:
                    result.kind = "unreachable"
                    result.reason = f"lost the connection for {RECONNECT_SECONDS} s while building"
                return results
            outs = [out for _, _, out, _ in runnable]
            state.transport.get(state.workdir, outs, self.local_root / "fetched", missing_ok=True)
        except TransferError as err:
            for _, result, _, _ in runnable:
                result.kind, result.reason = "transfer", str(err)
            return results
        steps = shell.statuses(log)
        for index, (planned, result, out, _) in enumerate(runnable):
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
        self._store(engine, digest, manifest)
        self.manifests[result.job_id] = manifest
        result.status, result.kind = "built", None
        result.engine_size, result.build_key = engine.stat().st_size, manifest["build_key"]
        result.tensorrt = tensorrt_text(manifest)

    def _wait_for_batch(self, state: HostState, batch_dir: str, pid: int) -> str | None:
        """Poll the detached batch until it ends; its log, or None when the host stayed unreachable
        for RECONNECT_SECONDS (the batch may still be running there)."""
        delay, lost_since = 0.2, None
        while True:
            if self.interrupted.is_set():
                return ""
            try:
                proc = state.transport.run(shell.batch_poll(batch_dir, pid))
                ok = proc.returncode == 0
            except FleetbuildError:
                ok = False
            if not ok:
                if lost_since is None:
                    lost_since = time.time()
                    self.notify(f"lost the connection to {state.host.name}; reconnecting")
                if time.time() - lost_since > RECONNECT_SECONDS:
                    return None
                time.sleep(2.0)
                continue
            if lost_since is not None:
                self.notify(f"reconnected to {state.host.name}; the build went on")
                lost_since = None
            log = proc.stdout.decode("utf-8", "replace")
            if shell.BATCH_DONE in log or shell.BATCH_ALIVE not in log:
                return log
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def running(self) -> list[tuple[str, HostState, str, float]]:
        """(job id, host, remote output dir, start time) of the jobs on hosts right now."""
        with self._inflight_lock:
            return [(job, state, out, self._started.get(job, time.time()))
                    for job, (state, out) in self._inflight.items()]

    def remote_status(self, state: HostState, outs: list[str]) -> dict[str, Any]:
        """The workers' status.json of `outs` on one host (one SSH round trip)."""
        proc = state.transport.run(shell.command([state.host.python, state.worker, "status", *outs],
                                                 env=state.host.env))
        try:
            return json.loads(proc.stdout.decode()) if proc.returncode == 0 else {}
        except ValueError:
            return {}

    def interrupt(self, queue: "JobQueue") -> None:
        """Ctrl-C / SIGTERM: no new jobs, stop ansible, kill the running batches' process groups."""
        with self._inflight_lock:          # before the flag: pollers that see it unregister their batch
            batches = [(batch_dir, state) for batch_dir, (state, _) in self._batches.items()]
        self.interrupted.set()
        queue.close()
        self.ansible.cancel()
        for batch_dir, state in batches:
            self._kill_batch(state, batch_dir)

    def _kill_batch(self, state: HostState, batch_dir: str) -> None:
        try:
            state.transport.run(shell.kill_batch(batch_dir))
            self.notify(f"stopped the running build on {state.host.name}")
        except FleetbuildError as err:
            self.notify(f"could not stop the build on {state.host.name}: {err}")

    def _store(self, engine: Path, digest: str, manifest: Mapping[str, Any]) -> None:
        from fleetbuild.store.blobs import blob_key, upload_blob

        if not self.store.exists(blob_key(digest)):
            upload_blob(self.store, engine, digest)
        data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
        if self.signer is not None:   # the signature first: a manifest is never visible unsigned
            self.store.write_bytes(f"builds/{manifest['build_key']}.json.minisig", self.signer.sign(
                data, f"fleetbuild manifest {manifest['job_id']} {manifest['build_key']}").encode())
        self.store.write_bytes(f"builds/{manifest['build_key']}.json", data)

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


class JobQueue:
    """Pending jobs, longest first; a host takes the first job it may build and has not failed."""

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


def python_problem(facts: Mapping[str, Any], python: str) -> str | None:
    version = str((facts.get("python") or {}).get("version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < (3, 6):
        return f"{python} is Python {version}, too old for the worker (it needs Python 3.6 or newer; set fleetbuild_python)"
    return None


def worker_start_failure(rc: int | None, output: str, python: str) -> str:
    """A one-line reason for a worker (or probe) that did not get to write its result."""
    text = output.replace("\r", "")
    if rc is None:
        lines = [line for line in text.splitlines() if line.strip()]
        return f"the worker did not run: {lines[-1][:200] if lines else 'no output'}"
    if rc == 127 or "No such file or directory" in text and python in text:
        return f"{python} not found on the host (set fleetbuild_python)"
    if "SyntaxError" in text or "invalid syntax" in text:
        return f"{python} is too old for the worker (it needs Python 3.6 or newer; set fleetbuild_python)"
    if rc < 0 or rc > 128:
        number = -rc if rc < 0 else rc - 128
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        return f"the worker was killed ({name}) before it finished"
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(shell.STATUS_MARK)]
    return f"the worker did not run with {python}: exit code {rc}: {lines[-1][:200] if lines else ''}"


def control_dir() -> Path:
    """A short per-user directory for SSH control sockets: a socket path must stay under 108 bytes,
    which a ControlPath under a deep cache directory does not."""
    import tempfile

    path = Path(tempfile.gettempdir()) / f"fleetbuild-ssh-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise FleetbuildError(f"{path} must be a directory owned by you with mode 0700 (it holds SSH sockets)")
    return path


def build_zipapp_to(cache_dir: Path) -> tuple[Path, str]:
    directory = cache_dir / "worker"
    directory.mkdir(parents=True, exist_ok=True)
    return build_zipapp(directory)

