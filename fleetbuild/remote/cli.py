"""fleetbuild-remote's command line: probe, build, header."""
import argparse
import json
import sys

from .errors import EXIT_USAGE


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
    pull = commands.add_parser("pull", help="install the engine of a release that matches this device")
    pull.add_argument("--store", required=True, help="store directory, or an http(s) base URL of its keys")
    pull.add_argument("--project", required=True)
    pull.add_argument("--version", required=True)
    pull.add_argument("--model", required=True)
    pull.add_argument("--precision", help="when several precisions match")
    pull.add_argument("--public-key", required=True, help="the fleet's minisign public key file")
    pull.add_argument("--out", required=True, help="where to install MODEL.plan")
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
    if args.command == "pull":
        from .pull import PullError, pull as do_pull

        try:
            with open(args.public_key) as handle:
                public = handle.read()
            job = do_pull(args.store, args.project, args.version, args.model, public, args.out, args.precision)
        except (PullError, IOError, OSError) as err:
            sys.stderr.write("fleetbuild-remote: pull: {}\n".format(err))
            return 1
        sys.stdout.write("installed {} as {}/{}.plan\n".format(job, args.out, args.model))
        return 0
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
            sys.stdout.write(json.dumps(read_header(args.engine)) + "\n")
            return 0
        except (HeaderError, IOError, OSError) as err:
            sys.stderr.write("fleetbuild-remote: {}: {}\n".format(args.engine, err))
            return 1
    parser.print_usage(sys.stderr)
    return EXIT_USAGE
