"""Mail-merge contact files, read as OVHcloud's SMS cookbook writes them, one row at a time.

The cookbook's ``contacts.csv``::

    number ;lastname ;firstname ;address
    0662000000 ;Durant ;Pierre ;xx rue montaigne Paris

a header row, ``;`` between fields and spaces around them (stripped here), a ``number`` column,
and every other column a merge variable of the message (``#firstname#``). Also read: ``,`` or
tab separators (the most frequent of the three in the header row decides), UTF-8 with or
without a BOM (another encoding by name), quoted fields, and a phone column of another name
(``number_column``, matched without regard to case). Rows are read as a stream, so memory does
not grow with the file; a named pipe works too.

A row is numbered by the line of the file it ends on (the header is line 1), as an editor
shows it: the rejects file and the request ids use that number.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from worker.errors import UsageError

#: Separators recognised in the header row, most preferred first on a tie.
DELIMITERS = (";", ",", "\t")


@dataclass(frozen=True, slots=True)
class Contact:
    """One data row: its line in the file and its fields, stripped (``""`` where the row is short)."""

    line: int
    fields: tuple[str, ...]
    extra: tuple[str, ...] = ()  # non-empty fields past the header's columns


def _delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ";"


class ContactsFile:
    """A contacts file open for reading: ``header``, ``delimiter``, ``number_index``, and its rows.

    ``with ContactsFile(path) as contacts: for contact in contacts: ...``; every problem with the
    file itself (missing, empty, no phone column, not text in ``encoding``) is a ``UsageError``.
    """

    def __init__(self, path: Path, *, number_column: str = "number", encoding: str = "utf-8-sig") -> None:
        self.path = path
        self.number_column = number_column
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise UsageError(f"unknown encoding {encoding!r}") from None
        self.encoding = encoding
        self.header: tuple[str, ...] = ()
        self.delimiter = ";"
        self.number_index = 0
        self.size: int | None = None
        self._raw: io.FileIO | None = None
        self._text: io.TextIOWrapper | None = None

    def __enter__(self) -> ContactsFile:
        try:
            self._raw = io.FileIO(self.path, "r")
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror}") from None
        stat = os.fstat(self._raw.fileno())
        self.size = stat.st_size if self.path.is_file() else None
        self._text = io.TextIOWrapper(io.BufferedReader(self._raw), encoding=self.encoding, newline="")
        try:
            header_line = self._text.readline()
        except UnicodeDecodeError as exc:
            self.close()
            raise self._not_text(exc, 1) from None
        if not header_line.strip():
            self.close()
            raise UsageError(f"{self.path} is empty: it needs a header row such as 'number;firstname'")
        self.delimiter = _delimiter(header_line)
        self.header = tuple(name.strip() for name in next(csv.reader([header_line], delimiter=self.delimiter)))
        names = [name for name in self.header if name]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            self.close()
            raise UsageError(f"{self.path}: the header names column {duplicated[0]!r} twice")
        wanted = [i for i, name in enumerate(self.header) if name.lower() == self.number_column.strip().lower()]
        if not wanted:
            self.close()
            raise UsageError(
                f"{self.path}: no {self.number_column!r} column in the header ({', '.join(names) or 'empty'}); "
                "name the phone column with --number-column"
            )
        self.number_index = wanted[0]
        return self

    @property
    def variables(self) -> tuple[str, ...]:
        """The merge variables: every named column but the phone number's."""
        return tuple(name for i, name in enumerate(self.header) if name and i != self.number_index)

    def bytes_read(self) -> int | None:
        """How far into the file reading has got, in bytes (``None`` for a pipe)."""
        try:
            return self._raw.tell() if self._raw is not None else None
        except OSError:
            return None

    def __iter__(self) -> Iterator[Contact]:
        if self._text is None:
            raise RuntimeError("open the file first: with ContactsFile(path) as contacts")
        reader = csv.reader(self._text, delimiter=self.delimiter, skipinitialspace=True, strict=False)
        width = len(self.header)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise self._not_text(exc, reader.line_num + 1) from None
            except csv.Error as exc:
                raise UsageError(f"{self.path}: line {reader.line_num}: {exc}") from None
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line
            stripped = tuple(field.strip() for field in fields)
            extra = tuple(field for field in stripped[width:] if field)
            padded = stripped[:width] + ("",) * (width - len(stripped))
            yield Contact(reader.line_num + 1, padded, extra)

    def _not_text(self, exc: UnicodeDecodeError, line: int) -> UsageError:
        # Text is decoded a block at a time: the line is where reading had got to, not exact.
        return UsageError(
            f"{self.path} is not {self.encoding} text ({exc.reason}, around line {line}): "
            "save the file as UTF-8, or name its encoding with --encoding"
        )

    def close(self) -> None:
        if self._text is not None:
            self._text.close()
        elif self._raw is not None:
            self._raw.close()
        self._text = self._raw = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
