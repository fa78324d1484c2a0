"""Worker outcome classes and their exit codes (the controller decides retries from these)."""

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_SPEC = 3          # the spec or a staged input is wrong: a controller bug or a hand-made mistake
EXIT_BUILD_FAILED = 10     # the parser or builder refused: the same on any host, not worth retrying
EXIT_ENVIRONMENT = 11      # this host cannot build it (no TensorRT, no GPU, disk full, OOM): retry elsewhere
EXIT_INTERRUPTED = 130


class WorkerError(Exception):
    kind = "environment"
    exit_code = EXIT_ENVIRONMENT

    def __init__(self, message, details=()):
        Exception.__init__(self, message)
        self.message = message
        self.details = list(details)


class SpecError(WorkerError):
    kind = "spec"
    exit_code = EXIT_BAD_SPEC


class BuildFailed(WorkerError):
    kind = "build"
    exit_code = EXIT_BUILD_FAILED


class EnvironmentFailure(WorkerError):
    kind = "environment"
    exit_code = EXIT_ENVIRONMENT


class Interrupted(WorkerError):
    kind = "interrupted"
    exit_code = EXIT_INTERRUPTED
EXIT_INTERNAL = 70         # a bug in the worker (details carry the traceback with --debug)
