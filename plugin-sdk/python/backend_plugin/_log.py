"""Logs as hclog JSON lines on the real stderr, which the daemon parses and
re-logs under the plugin's name (go-plugin's host side reads @level,
@message, @timestamp and every other key as a field)."""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import threading

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

# The environment variable through which the daemon tells the lowest level
# it keeps (trace, debug, info, warn, error).
ENV_LOG_LEVEL = "BACKEND_PLUGIN_LOG_LEVEL"

_LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}

# The attributes every LogRecord has: the others came through extra=.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}

logger = logging.getLogger("plugin")
"""The plugin's logger: once serve() runs, its records (and those of every
other logger) reach the daemon's log. Fields go in ``extra``:
``logger.info("parsed", extra={"item": item.id})``. Never log secret
parameter values."""


def level_from_env() -> int:
    return _LEVELS.get(os.environ.get(ENV_LOG_LEVEL, "").strip().lower(), logging.INFO)


def hclog_level(levelno: int) -> str:
    if levelno < logging.DEBUG:
        return "trace"
    if levelno < logging.INFO:
        return "debug"
    if levelno < logging.WARNING:
        return "info"
    if levelno < logging.ERROR:
        return "warn"
    return "error"


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # NaN and infinities have no JSON form
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, BaseException):
        return str(v) or type(v).__name__
    return str(v)


class HCLogHandler(logging.Handler):
    """Writes each record as one hclog JSON line to a file descriptor (the
    process's original stderr, kept by serve before it redirects
    sys.stderr). Its lock makes each line one uninterrupted write."""

    def __init__(self, fd: int, module: str):
        super().__init__()
        self.fd = fd
        self.module = module

    def format_line(self, record: logging.LogRecord) -> bytes:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        entry = {
            "@level": hclog_level(record.levelno),
            "@message": record.getMessage(),
            "@module": self.module,
            # The layout go-plugin's host parses: microseconds, then Z.
            "@timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
        }
        if record.name not in ("plugin", "root", self.module):
            entry["logger"] = record.name
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_"):
                entry[k.lstrip("@")] = _jsonable(v)
        if record.exc_info and record.exc_info[0] is not None:
            entry["traceback"] = logging.Formatter().formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = record.stack_info
        line = json.dumps(entry, ensure_ascii=False, default=str)
        return line.encode("utf-8", "backslashreplace") + b"\n"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = memoryview(self.format_line(record))
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except Exception:
            self.handleError(record)


_installed = threading.Lock()


def install(fd: int, module: str) -> HCLogHandler:
    """Sends every logger's records, from the daemon's level up, to fd."""
    h = HCLogHandler(fd, module)
    root = logging.getLogger()
    with _installed:
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(h)
        root.setLevel(level_from_env())
    logging.captureWarnings(True)  # warnings.warn: a WARNING record, not raw stderr
    return h
