"""Just enough of two wire protocols for the proxy to act on whole messages, never half of one.

- RESP (Redis): where one reply ends, and the name of each command a client sends, so a fault
  can take exactly one reply (say, the answer to one ``EVALSHA``) and leave the stream framed
  for the next. Replies come back in the order of the commands (pipelines included), so the
  n-th reply answers the n-th command.
- HTTP/1.1 requests: where one request (headers and ``Content-Length`` body) ends, and its
  request line, so a fault can hold back a whole ``POST .../jobs`` and deliver it later.

Neither is a full parser: inline Redis commands, chunked request bodies and pipelined HTTP are
not handled (redis-py and python-ovh send none of them).
"""

from __future__ import annotations

#: RESP types whose header line is the whole value (RESP2 and RESP3).
_LINE = frozenset(b"+-:_,#(")
#: RESP types whose header gives the length of a body that follows (-1: null).
_BULK = frozenset(b"$!=")
#: RESP types whose header gives a number of elements that follow (-1: null).
_AGGREGATE = frozenset(b"*~>")
#: RESP types whose header gives a number of key/value pairs that follow.
_PAIRS = frozenset(b"%|")


class FramingError(ValueError):
    """Bytes that are not the protocol the proxy was told to expect."""


def resp_message_end(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Offset just past the complete RESP message starting at ``start``, or ``None`` if more
    bytes are needed."""
    pos = start
    pending = 1
    while pending:
        if pos >= len(buf):
            return None
        kind = buf[pos]
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        header = bytes(buf[pos + 1 : eol])
        pos = eol + 2
        pending -= 1
        if kind in _LINE:
            continue
        try:
            count = int(header)
        except ValueError:
            raise FramingError(f"not RESP: {bytes(buf[start : start + 40])!r}") from None
        if kind in _BULK:
            if count >= 0:
                if len(buf) < pos + count + 2:
                    return None
                pos += count + 2
        elif kind in _AGGREGATE:
            pending += max(count, 0)
        elif kind in _PAIRS:
            pending += 2 * count + (1 if kind == ord("|") else 0)  # an attribute precedes its value
        else:
            raise FramingError(f"not RESP: {bytes(buf[start : start + 40])!r}")
    return pos


def _bulk(message: bytes | bytearray, at: int) -> tuple[bytes, int]:
    """The bulk string at ``at`` (its ``$<len>`` line) and the offset past it."""
    length_end = message.find(b"\r\n", at)
    if message[at : at + 1] != b"$" or length_end < 0:
        raise FramingError(f"not a RESP command: {bytes(message[:40])!r}")
    length = int(message[at + 1 : length_end])
    return bytes(message[length_end + 2 : length_end + 2 + length]), length_end + 2 + length + 2


def resp_command_label(message: bytes | bytearray) -> str:
    """What a fault can match a complete RESP command (an array of bulk strings) on: its name in
    upper case, and for ``EVALSHA`` the script's SHA1 (``"EVALSHA 1f0c..."``)."""
    if not message.startswith(b"*"):
        raise FramingError(f"not a RESP command: {bytes(message[:40])!r}")
    name, after = _bulk(message, message.find(b"\r\n") + 2)
    label = name.decode("ascii", "replace").upper()
    if label == "EVALSHA":
        sha, _ = _bulk(message, after)
        label += " " + sha.decode("ascii", "replace").lower()
    return label


def http_request_end(buf: bytes | bytearray) -> int | None:
    """Offset just past the complete HTTP/1.1 request at the start of ``buf``, or ``None``."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    length = 0
    for line in bytes(buf[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    end = head_end + 4 + length
    return end if len(buf) >= end else None


def http_request_line(buf: bytes | bytearray) -> str:
    """``"POST /1.0/sms/x/jobs"``: the method and target of the request at the start of ``buf``."""
    line = bytes(buf[: buf.find(b"\r\n")]).decode("latin-1")
    return line.rsplit(" ", 1)[0] if line.count(" ") >= 2 else line
