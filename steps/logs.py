"""Third-party logs and tracebacks go to a debug log, never to the terminal.

paramiko, botocore and urllib3 log (and paramiko's transport thread logs tracebacks)
when a host dies or hangs; with no handler, Python would print them on stderr under
handrail's own one-line messages. The debug log under the state dir is mode 0600 and
every line is scrubbed of known secrets, tracebacks included.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from types import TracebackType

from steps.paths import private_file, state_dir
from steps.secrets import redact

_MARK = "_handrail_debug_log"


def debug_log_path() -> Path:
    return state_dir() / "debug.log"


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def install(path: Path | None = None) -> Path | None:
    """Send every log record (and uncaught thread exceptions) to the debug log; none to
    the terminal. Idempotent. Returns the log's path, or None when it cannot be written
    (then records are dropped rather than printed)."""
    root = logging.getLogger()
    wanted = path or debug_log_path()
    for old in list(root.handlers):
        if getattr(old, _MARK, False):
            if isinstance(old, logging.FileHandler) and Path(old.baseFilename) == wanted.absolute():
                return wanted
            root.removeHandler(old)  # another state dir (HANDRAIL_HOME changed): follow it
            old.close()
    handler: logging.Handler
    try:
        where: Path | None = private_file(wanted)
        handler = logging.FileHandler(wanted, encoding="utf-8", delay=True)
    except OSError:
        where, handler = None, logging.NullHandler()
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    threading.excepthook = _thread_exception
    return where


def _thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    exc = (args.exc_type, args.exc_value, args.exc_traceback) if args.exc_value is not None else None
    logging.getLogger("handrail.thread").error("uncaught exception in thread %s", name, exc_info=exc)


def log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> str:
    """Log an exception that reached the top, and return the one line to show instead."""
    logging.getLogger("handrail").error("uncaught exception", exc_info=(exc_type, exc, tb))
    text = redact(str(exc)).strip().splitlines()
    where = debug_log_path()
    return f"internal error: {exc_type.__name__}: {text[0][:200] if text else 'no message'} (details in {where})"


def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.stderr.write("handrail: interrupted\n")
        return
    sys.stderr.write(f"handrail: {log_uncaught(exc_type, exc, tb)}\n")
