#!/usr/bin/env python3
"""Device pull throughput vs curl from the same HTTP server.

A signed release with one engine of --mib MiB (random bytes) in a file store, served by a local
threaded HTTP server; each round downloads the engine with `curl -o` and installs it with
`fleetbuild-remote.pyz pull` (Python 3.6 when pyenv has it: the Jetson Nano's) into a fresh
directory, alternating which goes first. Prints medians and pull throughput / curl throughput
(goal >= 0.8: the signature, sha256 and atomic install cost little next to the transfer).

Over loopback the "transfer" is a memory copy at several GB/s, so the figure measures the device's
CPU (sha256: ~270 MiB/s in pyenv's Python 3.6 here, ~1.3 GiB/s in 3.10) and its disk (fsync before
the rename), which curl skips. `--link-mbps N` paces the server at N Mbit/s, the device's link
(a Jetson's Ethernet is 1000): there both clients wait for the network, as on a device.

    .venv/bin/python bench/pull.py [--mib 256] [--runs 5] [--link-mbps 1000]
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


class Quiet(http.server.SimpleHTTPRequestHandler):
    """Serves files with sendfile(2): the server costs next to no CPU on this 2-core machine, so the
    figures compare the two clients, not the clients against a Python file copier."""

    def log_message(self, *args):
        pass

    link_bytes_per_second = 0.0      # 0: as fast as loopback goes

    def copyfile(self, source, outputfile):
        self.wfile.flush()
        if not self.link_bytes_per_second:
            self.connection.sendfile(source)
            return
        started, sent, step = time.perf_counter(), 0, 1 << 20
        while True:                      # paced: never ahead of the link's schedule
            count = self.connection.sendfile(source, sent, step)
            if not count:
                return
            sent += count
            ahead = sent / self.link_bytes_per_second - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", help="the device's interpreter (default: pyenv 3.6, the Jetson Nano's)")
    parser.add_argument("--link-mbps", type=float, default=0,
                        help="pace the server at this many Mbit/s (the device's network); default: unpaced")
    args = parser.parse_args()
    Quiet.link_bytes_per_second = args.link_mbps * 1e6 / 8
    import _needs

    _needs.command("curl", "apt-get install curl")
    from fleetbuild.store import signing
    from fleetbuild.build.bundle import build_zipapp
    from fleetbuild.plugin.manager import Plugins
    from fleetbuild.store.publish import publish

    python = args.python
    if python is None:
        try:
            from conftest import pyenv_python
            python = pyenv_python("3.6") or sys.executable
        except Exception:
            python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        store = Plugins(entry_points=False).store_for(f"file://{base}/store", {}, base, "bench", {})
        engine = base / "engine.plan"
        with open(engine, "wb") as handle:
            for _ in range(args.mib):
                handle.write(os.urandom(1 << 20))
        digest = hashlib.sha256(engine.read_bytes()).hexdigest()
        store.upload_file(f"blobs/sha256/{digest}", engine)
        store.write_bytes(f"builds/{digest}.json", json.dumps({"build_key": digest}).encode())
        _, public, key = signing.generate(base / "keys", {})
        publish(store, "bench", "1.0", {"det/t4/fp16": {
            "target": "t4", "variant": "", "precision": "fp16", "compute_capability": "7.5",
            "tensorrt": {"flavor": "tensorrt", "version": "10.3.0.26"}, "build_key": digest, "compat": {},
            "manifest": f"builds/{digest}.json", "engine": {"file": "engine.plan", "sha256": digest,
                                                            "size": engine.stat().st_size}}}, key)
        facts = base / "facts.json"
        facts.write_text(json.dumps({"gpus": [{"compute_capability": "7.5"}],
                                     "tensorrt": [{"flavor": "tensorrt", "version": "10.3.0.26"}]}))
        zipapp, _ = build_zipapp(base)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 functools.partial(Quiet, directory=str(base / "store")))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        curl_times, pull_times = [], []
        try:
            for run in range(args.runs):
                order = ("curl", "pull") if run % 2 == 0 else ("pull", "curl")
                for tool in order:
                    out = base / f"out-{tool}-{run}"
                    start = time.perf_counter()
                    if tool == "curl":
                        subprocess.run(["curl", "-sf", "-o", str(out), f"{url}/blobs/sha256/{digest}"], check=True)
                        curl_times.append(time.perf_counter() - start)
                    else:
                        proc = subprocess.run([python, str(zipapp), "pull", "--store", url, "--project", "bench",
                                               "--version", "1.0", "--model", "det", "--public-key", str(public),
                                               "--facts", str(facts), "--out", str(out)], capture_output=True,
                                              text=True)
                        if proc.returncode != 0:
                            sys.exit(proc.stderr)
                        pull_times.append(time.perf_counter() - start)
                    subprocess.run(["rm", "-rf", str(out)], check=True)
        finally:
            server.shutdown()
    curl, pull = statistics.median(curl_times), statistics.median(pull_times)
    link = f"server paced at {args.link_mbps:g} Mbit/s" if args.link_mbps else "unpaced loopback"
    print(f"engine {args.mib} MiB, {args.runs} runs, device Python {python}, {link}")
    print(f"curl  median {curl:.3f} s ({args.mib / curl:.0f} MiB/s)")
    print(f"pull  median {pull:.3f} s ({args.mib / pull:.0f} MiB/s; signature, sha256, atomic install included)")
    print(f"pull / curl throughput {curl / pull:.2f}  goal >= 0.8: {'met' if curl / pull >= 0.8 else 'NOT met'}")


if __name__ == "__main__":
    main()
