"""Length-prefixed JSON frames with a size cap, read without ever buffering more than the cap.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding an
object. Used between the host and the fork server, and between the fork server and the
child that runs a program.
"""

import json
import os

HEADER = 4


class FrameError(ValueError):
    """A frame that is oversized, truncated or not a JSON object."""


def encode(message):
    data = json.dumps(message).encode()
    return len(data).to_bytes(HEADER, "big") + data


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def decode(body):
    """The JSON object in a frame's body; `FrameError` for anything else."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise FrameError(f"malformed frame: {type(exc).__name__}") from None
    if not isinstance(message, dict):
        raise FrameError(f"malformed frame: a JSON {type(message).__name__}, not an object")
    return message


class FrameReader:
    """Accumulates one frame from reads of at most `wanted()` bytes.

    Args:
        limit: the largest body accepted; a header announcing more is a `FrameError`
            before any of the body is read.
    """

    def __init__(self, limit):
        self.limit = limit
        self.buffer = bytearray()
        self.size = None

    def wanted(self):
        """How many bytes to read next (never past the end of this frame)."""
        if self.size is None:
            return HEADER - len(self.buffer)
        return self.size - len(self.buffer)

    def feed(self, data):
        """Add bytes read; returns the decoded object once the frame is complete."""
        if len(data) > self.wanted():
            raise FrameError("read past the end of a frame")
        self.buffer += data
        if self.size is None and len(self.buffer) == HEADER:
            self.size = int.from_bytes(self.buffer, "big")
            self.buffer = bytearray()
            if self.size > self.limit:
                raise FrameError(f"a frame of {self.size} bytes; the limit is {self.limit}")
        if self.size is not None and len(self.buffer) == self.size:
            return decode(bytes(self.buffer))
        return None


def receive(fd, limit):
    """Block until one whole frame arrives on `fd`; None at end of file."""
    reader = FrameReader(limit)
    while True:
        chunk = os.read(fd, min(reader.wanted(), 1 << 20))
        if not chunk:
            return None
        message = reader.feed(chunk)
        if message is not None:
            return message
