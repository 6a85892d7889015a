"""Logging, configured once per process from settings: one record per line, no secrets, no numbers.

- ``text`` (default): ``time LEVEL logger: message key=value ...``; ``json``: one JSON object per
  line (python-json-logger: a maintained formatter that already handles extras, exceptions and
  non-JSON values, so we do not hand-write one). Structured ids (``extra={"call_id": ...}``)
  become JSON fields, or ``key=value`` pairs in text.
- One record per line: a traceback or a multi-line OVH message is folded into the line (text)
  or kept in one JSON string field.
- Phone numbers in E.164 form are masked in every formatted line (``+33*******78``), a safety
  net behind the rule that log lines carry ids, never receivers or message texts; dramatiq's
  own lines name a message by actor and id instead of printing its arguments.
- ``RepeatFilter``: a loop that fails the same way many times a second (a dispatcher that lost
  Redis) logs that line once per ``interval_s`` with the count of the lines it held back.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import Any

import dramatiq
from pythonjsonlogger.json import JsonFormatter

from worker.phones import mask_number

#: Attributes every ``LogRecord`` has; anything else on a record was passed as ``extra``.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

_E164 = re.compile(r"\+(\d{6,15})\b")


def redact(text: str) -> str:
    """``text`` with every E.164-looking number masked (``worker.phones.mask_number``)."""
    if "+" not in text:
        return text
    return _E164.sub(lambda match: mask_number(match.group(0)), text)


def _fold(text: str) -> str:
    """One line: newlines (tracebacks, multi-line OVH messages) become `` | ``."""
    return " | ".join(part for part in text.splitlines() if part.strip()) if "\n" in text else text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` on one line, numbers masked."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        parts = [self.formatMessage(record)]
        parts += [f"{key}={value}" for key, value in _extras(record).items()]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append("| " + record.exc_text)
        if record.stack_info:
            parts.append("| " + self.formatStack(record.stack_info))
        return redact(_fold(" ".join(parts)))


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: ``level``, ``logger``, ``message``, extras, ``exc_info``, ``time``."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=sorted(_STANDARD_ATTRS),
            timestamp="time",  # ISO 8601, UTC
        )

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))  # JSON escapes newlines: one line already


class RepeatFilter(logging.Filter):
    """Lets an identical WARNING-or-worse line through once per ``interval_s``.

    Identical means same level and formatted message, whichever logger (dramatiq logs the same
    connection error from one logger per queue), so distinct events (another call id) always
    pass. dramatiq's INFO lines are held back too: "Restarting consumer in 3.00 seconds."
    comes with each of its connection errors. The next line let through after a quiet period
    carries ``repeated=N``: how many were held back. Remembers at most ``max_keys`` lines.
    """

    def __init__(self, interval_s: float = 10.0, *, max_keys: int = 1000) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._seen: dict[tuple[int, str], tuple[float, int]] = {}  # key -> (last let through, held back)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        floor = logging.INFO if record.name.startswith("dramatiq.") else logging.WARNING
        if record.levelno < floor:
            return True
        key = (record.levelno, record.getMessage())
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(key, (-float("inf"), 0))
            if now - last < self.interval_s:
                self._seen[key] = (last, held + 1)
                return False
            if len(self._seen) >= self.max_keys:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval_s}
            self._seen[key] = (now, 0)
        if held:
            record.repeated = held
        return True


class DramatiqMessageFilter(logging.Filter):
    """dramatiq logs a failed message with its arguments (receivers, text): name it by actor and id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, dramatiq.Message) for a in record.args):
            record.args = tuple(
                f"{a.actor_name}[{a.message_id}]" if isinstance(a, dramatiq.Message) else a for a in record.args
            )
        return True


def configure_logging(*, level: str = "INFO", fmt: str = "text", stream: Any = None) -> logging.Handler:
    """Route every logger through one stderr handler in ``fmt`` (``text`` or ``json``); returns it.

    Replaces the root logger's handlers, so calling it again reconfigures rather than duplicates.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(DramatiqMessageFilter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
