"""Progress bars for ``sms-worker campaign send`` (``rich``), on stderr only.

Two bars: queueing (bytes of the file read, with rows queued and rejected so far), then results
(rows answered out of rows queued, with sent and failed so far). They are off when stderr is not
a terminal or when asked (``--no-progress``), so ``--json`` output, pipes and logs stay clean.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class CampaignProgress:
    """``with CampaignProgress(enabled) as progress: progress.queueing(total_bytes); progress.queued(...)``."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr),
            disable=not self.enabled,
        )
        self._queue: TaskID | None = None
        self._results: TaskID | None = None

    def __enter__(self) -> CampaignProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def queueing(self, total_bytes: int | None) -> None:
        """Start the queueing bar; ``total_bytes`` ``None`` (a pipe) shows no bar, only counts."""
        self._queue = self._progress.add_task("queueing", total=total_bytes, counts="")

    def queued(self, bytes_read: int | None, rows: int, queued: int, rejected: int) -> None:
        if self._queue is None:
            return
        counts = f"{rows:,} rows: {queued:,} queued, {rejected:,} rejected"
        self._progress.update(self._queue, completed=bytes_read or 0, counts=counts)

    def results(self, total: int) -> None:
        """Start the results bar: ``total`` rows to hear about."""
        if self._queue is not None:
            task = self._progress.tasks[self._queue]
            if task.total is not None:
                self._progress.update(self._queue, completed=task.total)
        self._results = self._progress.add_task("results ", total=total, counts="")

    def answered(self, done: int, sent: int, failed: int) -> None:
        if self._results is None:
            return
        self._progress.update(self._results, completed=done, counts=f"{sent:,} sent, {failed:,} not sent")
