"""fleetbuild-remote's command line: probe, build, status, pull, agent, device-key, rollback, installed,
header."""
import argparse
import json
import os
import sys

from .errors import EXIT_USAGE


def _os_error(err):
    """An OSError as 'PATH: what happened' (never errno text alone)."""
    what = getattr(err, "strerror", None) or str(err)
    return "{}: {}".format(err.filename, what) if getattr(err, "filename", None) else what


def _argument(kind):
    """argparse type= for a name (`kind`) or a release version: the check's own message on a bad value
    (names.py is imported only when a command takes a name: the worker starts on every build)."""
    def parse(value):
        from .names import check_name, check_version

        try:
            return check_version(value) if kind == "version" else check_name(kind, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err))
    return parse


NAME = {kind: _argument(kind) for kind in ("project", "model", "channel", "device")}
VERSION = _argument("version")


def _read(option, path, as_json=False):
    """The text (or JSON) of the file an option names; ValueError naming both when it cannot be read."""
    try:
        with open(path) as handle:
            return json.load(handle) if as_json else handle.read()
    except (IOError, OSError) as err:
        raise ValueError("{} {}: cannot read it: {}".format(option, path, getattr(err, "strerror", None) or err))
    except ValueError as err:
        raise ValueError("{} {}: not JSON ({})".format(option, path, err))


def _add_health_options(parser, what):
    parser.add_argument("--health", action="store_true",
                        help="after {}, load the new engine with this device's TensorRT and run the release's golden "
                             "samples through it before keeping it".format(what))
    parser.add_argument("--health-cmd", metavar="CMD", help="also run CMD (argv, no shell); non-zero exit rolls back")
    parser.add_argument("--health-timeout", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--health-runs", type=int, default=20, metavar="N", help="golden runs timed (default 20)")
    parser.add_argument("--max-latency-ms", type=float, metavar="MS", help="roll back when p99 latency is over MS")
    parser.add_argument("--max-watts", type=float, metavar="W", help="roll back when the board draws more (Jetson)")
    parser.add_argument("--max-slowdown", type=float, metavar="PERCENT",
                        help="roll back when p50 is this much slower than the engine it replaces")


def _gate(args):
    from .health import HealthGate

    if not (args.health or args.health_cmd):
        return None
    return HealthGate(args.health_cmd, args.health_timeout, runs=args.health_runs, max_latency_ms=args.max_latency_ms,
                      max_watts=args.max_watts,
                      max_slowdown=args.max_slowdown / 100.0 if args.max_slowdown is not None else None)


def _pull(args):
    from .facts import FactsError, check_facts
    from .names import BadName
    from .pull import PullError, pull as do_pull

    try:
        public = _read("--public-key", args.public_key)
        facts = urls = None
        if args.facts:
            try:
                facts = check_facts(_read("--facts", args.facts, as_json=True))
            except FactsError as err:
                raise ValueError("--facts {}: {}".format(args.facts, err))
        if args.urls:
            urls = _read("--urls", args.urls, as_json=True)
            if not isinstance(urls, dict):
                raise ValueError("--urls {}: expected a JSON object of store key -> URL".format(args.urls))
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError("--out {}: is a file, not a directory".format(args.out))
        before = None
        if (args.health or args.health_cmd) and args.layout != "plain":
            raise ValueError("--health: the health gate runs on the plain layout only (Triton checks its own models)")
        if args.health or args.health_cmd:
            from .install import current

            before = ((current(args.out, args.model) or {}).get("release") or {}).get("version")
        gate = _gate(args)
        result = do_pull(args.store, args.project, args.version, args.model, public, args.out, args.precision,
                         facts, args.channel, args.dry_run, urls, args.layout, args.mirror, golden=gate is not None)
        if result.status == "installed" and gate is not None:
            from .health import remember, restore

            verdict = gate.check(args.out, args.model)
            remember(args.out, args.model, verdict, result.version, result.entry["engine"]["sha256"])
            if not verdict["ok"]:
                raise PullError("{} failed its health gate ({}); {}".format(
                    result.job_id, verdict["reason"], restore(args.out, args.model, before)))
    except PullError as err:
        sys.stderr.write("fleetbuild-remote: pull: {}\n".format(err))
        for reason in err.reasons:
            sys.stderr.write("  {}\n".format(reason))
        return 1
    except (BadName, ValueError) as err:
        sys.stderr.write("fleetbuild-remote: pull: {}\n".format(err))
        return 1
    except (IOError, OSError) as err:
        sys.stderr.write("fleetbuild-remote: pull: {}\n".format(_os_error(err)))
        return 1
    if result.status == "installed":
        where = "{}/{}.plan".format(args.out, args.model) if args.layout == "plain" else \
            "{}/{} (Triton model repository entry)".format(args.out, args.model)
        libraries = [p["name"] for p in (result.entry or {}).get("plugins") or [] if p.get("sha256")]
        if libraries:
            where += "; its plugin libraries {} under {}/plugins".format(
                ", ".join(libraries), args.out if args.layout == "plain" else "{}/{}".format(args.out, args.model))
        sys.stdout.write("installed {} as {}\n".format(result.job_id, where))
    elif result.status == "unchanged":
        sys.stdout.write("unchanged: {} is already installed in {}\n".format(result.job_id, args.out))
    else:
        sys.stdout.write("would install {} (release {}, {} bytes)\n".format(
            result.job_id, result.version, result.entry["engine"].get("size")))
        for reason in result.reasons:           # why the others were not chosen
            sys.stdout.write("  {}\n".format(reason))
    return 0


def _agent(args):
    from .agent import AgentOptions, run_cycle
    from .facts import FactsError, check_facts
    from .reports import ReportSink

    try:
        public = _read("--public-key", args.public_key)
        facts = check_facts(_read("--facts", args.facts, as_json=True)) if args.facts else None
        urls = _read("--urls", args.urls, as_json=True) if args.urls else None
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError("--out {}: is a file, not a directory".format(args.out))
        if args.report_url_file:
            args.report_url = _read("--report-url-file", args.report_url_file).strip()
            if not args.report_url.startswith(("http://", "https://")):
                raise ValueError("--report-url-file {}: holds no http(s) URL".format(args.report_url_file))
    except (ValueError, FactsError) as err:
        sys.stderr.write("fleetbuild-remote: agent: {}\n".format(err))
        return 1
    health = _gate(args)
    report = ReportSink(args.report_to, args.report_url) if (args.report_to or args.report_url) else None
    opts = AgentOptions(args.store, args.project, args.channel, args.model, public, args.out, args.device_id,
                        args.jitter, args.precision, facts, urls, health, report)
    try:
        cycle = run_cycle(opts)
    except (IOError, OSError) as err:
        sys.stderr.write("fleetbuild-remote: agent: {}\n".format(_os_error(err)))
        return 1
    stream = sys.stderr if cycle.status == "failed" else sys.stdout
    for line in cycle.lines:
        stream.write("{}\n".format(line))
    return 1 if cycle.status == "failed" else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fleetbuild-remote",
                                     description="fleetbuild's worker for build hosts and devices.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("probe", help="print this host's facts as JSON")
    build = commands.add_parser("build", help="build one engine from a spec")
    build.add_argument("--spec", required=True, help="spec.json written by the controller")
    build.add_argument("--out", required=True, help="output directory")
    build.add_argument("--debug", action="store_true", help="keep tracebacks in result.json and stderr")
    status = commands.add_parser("status", help="print the status.json of build output directories")
    status.add_argument("dirs", nargs="*")
    pull = commands.add_parser("pull", help="install the engine of a release that fits this device")
    pull.add_argument("--store", required=True, help="store directory, or an http(s) base URL of its keys")
    pull.add_argument("--project", required=True, type=NAME["project"])
    which = pull.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", type=VERSION, help="the release version")
    which.add_argument("--channel", type=NAME["channel"], help="the release a (signed) channel points to, e.g. stable")
    pull.add_argument("--model", required=True, type=NAME["model"])
    pull.add_argument("--precision", help="precision preference when several fit, e.g. 'int8,fp16' "
                                          "(default fp16, bf16, fp32, tf32, int8, fp8)")
    pull.add_argument("--public-key", required=True, help="the fleet's minisign public key file")
    pull.add_argument("--out", required=True, help="where to install MODEL.plan")
    pull.add_argument("--facts", help="a probe's JSON (fleetbuild-remote.pyz probe) instead of probing this device")
    pull.add_argument("--urls", help="JSON of store key -> presigned URL (private buckets; from fleetbuild deploy)")
    pull.add_argument("--dry-run", action="store_true", help="print the choice and the reasons, download nothing")
    pull.add_argument("--mirror", action="store_true",
                      help="--store is this device's own copy (fleetbuild deploy's): hard-link engines from it "
                           "instead of copying, and drop an object from it that fails its check")
    _add_health_options(pull, "the install (plain layout)")
    pull.add_argument("--layout", choices=("plain", "triton"), default="plain",
                      help="plain: OUT/MODEL.plan; triton: a Triton model repository entry OUT/MODEL/N/model.plan "
                           "+ config.pbtxt")
    agent = commands.add_parser("agent", help="one cycle of following a channel's rollout (for a systemd timer)")
    agent.add_argument("--store", required=True, help="store directory, or an http(s) base URL of its keys")
    agent.add_argument("--project", required=True, type=NAME["project"])
    agent.add_argument("--channel", required=True, type=NAME["channel"])
    agent.add_argument("--model", required=True, action="append", type=NAME["model"], help="repeat for each model")
    agent.add_argument("--public-key", required=True, help="the fleet's minisign public key file")
    agent.add_argument("--out", required=True, help="where engines are installed (and the agent's state kept)")
    agent.add_argument("--device-id", type=NAME["device"],
                       help="this device's stable id (default: one made at first run, kept in OUT)")
    agent.add_argument("--jitter", type=float, default=0.0, metavar="SECONDS",
                       help="sleep a random 0..SECONDS first, so a fleet on one timer does not ask at once")
    agent.add_argument("--precision", help="precision preference when several fit, e.g. 'int8,fp16'")
    agent.add_argument("--facts", help="a probe's JSON instead of probing this device")
    agent.add_argument("--urls", help="JSON of store key -> presigned URL (private buckets)")
    _add_health_options(agent, "an install")
    where = agent.add_mutually_exclusive_group()
    where.add_argument("--report-to", metavar="DIR", help="leave signed reports under DIR/reports/ (a file store)")
    where.add_argument("--report-url", metavar="URL", help="PUT signed reports to URL (fleetbuild rollout grant)")
    where.add_argument("--report-url-file", metavar="FILE",
                       help="the same, the URL read from FILE (keeps the grant out of the process list; renew it "
                            "by rewriting the file)")
    device_key = commands.add_parser("device-key", help="print this device's report-signing public key (made if none)")
    device_key.add_argument("--out", required=True, help="the agent's --out directory (where the key is kept)")
    rollback = commands.add_parser("rollback", help="reinstate the engine installed before the current one")
    rollback.add_argument("--model", required=True, type=NAME["model"])
    rollback.add_argument("--out", required=True)
    rollback.add_argument("--layout", choices=("plain", "triton"), default="plain")
    listing = commands.add_parser("installed", help="what is installed in an engine directory (JSON)")
    listing.add_argument("--out", required=True)
    header = commands.add_parser("header", help="print an engine's flavor and TensorRT version")
    header.add_argument("engine")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if exit_.code is not None else 0
    if args.command == "probe":
        from .probe import main as probe_main

        return probe_main()
    if args.command == "build":
        from .worker import run

        return run(args.spec, args.out, debug=args.debug)
    if args.command == "pull":              # store URLs (and their passwords) reach its messages
        from .redact import RedactingStream

        if not isinstance(sys.stderr, RedactingStream):
            sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
        return _pull(args)
    if args.command == "agent":             # like pull: store URLs reach its messages
        from .redact import RedactingStream

        if not isinstance(sys.stderr, RedactingStream):
            sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
        return _agent(args)
    if args.command == "device-key":
        import base64

        from .devicekey import load_or_make, public_key

        try:
            if not os.path.isdir(args.out):
                os.makedirs(args.out)
            seed = load_or_make(args.out)
        except (IOError, OSError) as err:
            sys.stderr.write("fleetbuild-remote: device-key: {}\n".format(_os_error(err)))
            return 1
        sys.stdout.write("fleetbuild-device-key: {}\n".format(base64.b64encode(public_key(seed)).decode("ascii")))
        return 0
    if args.command == "rollback":
        from . import triton
        from .install import InstallError, rollback as do_rollback

        try:
            if not os.path.isdir(args.out):
                raise InstallError("--out {}: no such directory".format(args.out))
            manifest = (triton.rollback if args.layout == "triton" else do_rollback)(args.out, args.model)
        except (IOError, OSError) as err:
            sys.stderr.write("fleetbuild-remote: rollback: {}\n".format(_os_error(err)))
            return 1
        except (InstallError, ValueError) as err:
            sys.stderr.write("fleetbuild-remote: rollback: {}\n".format(err))
            return 1
        release = manifest.get("release") or {}
        sys.stdout.write("rolled back {} to {} (release {} {})\n".format(
            args.model, release.get("job_id"), release.get("project"), release.get("version")))
        return 0
    if args.command == "installed":
        from .listing import dump, installed

        try:
            rows = installed(args.out)
        except (IOError, OSError) as err:
            sys.stderr.write("fleetbuild-remote: installed: --out {}: {}\n".format(args.out, err.strerror or err))
            return 1
        sys.stdout.write(dump(rows) + "\n")
        for row in rows:
            if row.get("error"):
                sys.stderr.write("fleetbuild-remote: installed: {}\n".format(row["error"]))
        return 1 if any(row.get("error") for row in rows) else 0
    if args.command == "status":
        found = {}
        for directory in args.dirs:
            try:
                with open(directory + "/status.json", "rb") as handle:
                    found[directory] = json.loads(handle.read().decode("utf-8"))
            except (IOError, OSError, ValueError):
                found[directory] = None
        sys.stdout.write(json.dumps(found) + "\n")
        return 0
    if args.command == "header":
        from .header import HeaderError, read_header

        try:
            found = read_header(args.engine)
        except (HeaderError, IOError, OSError) as err:
            sys.stderr.write("fleetbuild-remote: {}: {}\n".format(args.engine, getattr(err, "strerror", None) or err))
            return 1
        sys.stdout.write(json.dumps(found) + "\n")
        if found["truncated"]:
            sys.stderr.write("fleetbuild-remote: {}: truncated: {} bytes, its header says {}\n".format(
                args.engine, found["file_size"], found["size"]))
            return 1
        return 0
    parser.print_usage(sys.stderr)
    return EXIT_USAGE
