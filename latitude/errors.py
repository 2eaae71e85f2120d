"""The root of latitude's exceptions.

Errors from the outside world (processes, sockets, etcd, PostgreSQL, gRPC) are translated once,
at the boundary where they are caught, into one of these, always with ``raise ... from err`` so
the cause stays visible. The CLI prints ``str(err)`` of a LatitudeError and exits non-zero; any
other exception is a bug and keeps its traceback.
"""


class LatitudeError(Exception):
    """Something the operator can act on; the message says what and, where possible, how."""


class ConfigError(LatitudeError):
    """A configuration value is missing, malformed or out of range; the message names the field."""


class StackError(LatitudeError):
    """The local stack could not be started, inspected or stopped."""


class MissingBinaryError(StackError):
    """A program the stack needs is not installed; the message names the package to install."""


class PortInUseError(StackError):
    """A port the stack needs is taken by another process."""


class UnknownRegionError(LatitudeError):
    """A region name that the topology does not know."""


def describe_error(err: BaseException) -> str:
    """A short reason for a failure, for messages and logs (an agent's CommandResult.error):
    "timed out", the system's words for an OSError, else the exception's own text."""
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err).strip() or type(err).__name__
