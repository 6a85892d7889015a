"""The rejects file: every row not sent, with why, in a file that can be fixed and sent again.

It has the input's columns and separator, then ``line`` (the row's line in the input) and
``reason``. Rows refused before queueing keep all their fields; rows the worker refused or OVH
failed (their results say so) keep their number only, since the command no longer holds the
row when the result arrives. Written as rows come (memory does not grow with it), rewritten by
each run (a resumed run lists again what earlier runs refused); removed when nothing was
rejected, so an old one never lies about the last run.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from worker.errors import UsageError


class RejectsFile:
    """``with RejectsFile(path, header, delimiter, number_index) as rejects: rejects.add(...)``."""

    def __init__(self, path: Path, header: tuple[str, ...], delimiter: str, number_index: int) -> None:
        self.path = path
        self.header = header
        self.delimiter = delimiter
        self.number_index = number_index
        self.count = 0
        self._file: IO[str] | None = None
        self._writer: Any = None  # a csv writer

    def __enter__(self) -> RejectsFile:
        try:
            self._file = self.path.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise UsageError(f"cannot write the rejects file {self.path}: {exc.strerror}") from None
        self._writer = csv.writer(self._file, delimiter=self.delimiter)
        self._row([*self.header, "line", "reason"])
        return self

    def _row(self, fields: list[str]) -> None:
        self._writer.writerow(fields)

    def add(self, line: int, fields: tuple[str, ...] | None, reason: str, *, number: str = "") -> None:
        """One rejected row: its fields when known, else only ``number``."""
        if fields is None:
            row = [""] * len(self.header)
            row[self.number_index] = number
        else:
            row = list(fields)
        self._row([*row, str(line), reason])
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            if self.count == 0:
                self.path.unlink(missing_ok=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
