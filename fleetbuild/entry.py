"""The `fleetbuild` command and `python -m fleetbuild`: main() with Ctrl-C handled from the first
import on (fleetbuild.cli imports every command; an interrupt there is still a clean exit 130)."""
import atexit
import os
import signal
import sys


def _unraisable(hook):
    """sys.unraisablehook that stays quiet about an interrupt landing where Python cannot raise it
    (an import lock's callback): the interrupt itself is reported once, by run()."""
    def quiet(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)
    return quiet


def run() -> None:
    sys.unraisablehook = _unraisable(sys.unraisablehook)
    code = 1
    try:
        try:
            from fleetbuild.cli import main

            code = main()
        except BaseException as err:        # the import may wrap an interrupt (errors.is_interrupt)
            from fleetbuild.errors import is_interrupt   # not before: this module must import in no time

            if not is_interrupt(err):
                raise
            sys.stderr.write("fleetbuild: interrupted\n")
            code = 130
        if code != 130:                     # the command is done and has said so: a late Ctrl-C changes nothing
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:               # landed between the command's return and the line above
        sys.stderr.write("fleetbuild: interrupted\n")
        code = 130
    if code == 130:
        # CPython remembers a KeyboardInterrupt that crossed a nested PyRun_* call (some extension
        # modules import through one) even when fleetbuild caught it, and then ends the process by
        # SIGINT at exit instead of with 130 (measured: 1 run in ~10 with Ctrl-C during start-up).
        # What a normal exit runs is run here, then the process exits with the status it reported.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            atexit._run_exitfuncs()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(130)
    sys.exit(code)
