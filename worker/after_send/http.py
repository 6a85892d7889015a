"""aiohttp, answering what its HTTP parser refuses without quoting it.

aiohttp answers a request it cannot parse (a bad request line, header or length) with a 400
whose text quotes the offending bytes, and logs them at ERROR with a traceback. Here the request
line holds the callback token, so neither may happen: ``QuietAppRunner`` serves an application
like ``web.AppRunner`` but answers such requests with a fixed text and logs them at DEBUG without
their content. (It reaches into aiohttp's ``Server``/``RequestHandler``; ``tests/after_send`` checks
the answer, so an aiohttp upgrade that changes them fails there.)
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)


class _QuietRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("error serving a request: %s", type(exc).__name__ if exc else "unknown")
        else:
            log.debug("refused a malformed HTTP request with %d", status)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started: cannot answer with an error")
        response = web.Response(status=status, text=f"{status}: {HTTPStatus(status).phrase}")
        response.force_close()
        return response


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class QuietAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer unparseable requests with a fixed text."""

    async def _make_server(self) -> web.Server:
        server: Any = await super()._make_server()
        server.__class__ = _QuietServer
        return server  # type: ignore[no-any-return]
