"""A session's recording: an asciicast v2 file written as the bytes pass, then stored
once, whole, in the content-addressed blob store (`<data>/blobs/sha256/<hex>`).

Output (and input, when the site records it) is decoded as UTF-8 incrementally, one
decoder per direction, so a character split across two frames is written whole; bytes
that are not UTF-8 become U+FFFD. Writes are buffered; the file is synced once, at the
end, off the event loop.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MEDIA_TYPE = "application/x-asciicast"
TERM = "xterm-256color"


@dataclass(frozen=True)
class Stored:
    sha256: str
    size: int


def blob_path(blobs_dir: Path, sha256: str) -> Path:
    return blobs_dir / sha256


class Recording:
    """One asciicast v2 file being written."""

    def __init__(
        self, work_dir: Path, cols: int, rows: int, title: str, record_input: bool
    ) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=work_dir, prefix="session-", suffix=".cast")
        self.path = Path(name)
        self._file = os.fdopen(descriptor, "wb", buffering=64 * 1024)
        self._hash = hashlib.sha256()
        self.size = 0
        self.record_input = record_input
        self._output = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._input = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = time.monotonic()
        header = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "env": {"TERM": TERM},
            "title": title,
        }
        self._line(header)

    def output(self, data: bytes) -> None:
        self._event("o", self._output.decode(data))

    def input(self, data: bytes) -> None:
        if self.record_input:
            self._event("i", self._input.decode(data))

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def _event(self, code: str, text: str) -> None:
        if text:
            self._line([round(time.monotonic() - self._started, 6), code, text])

    def _line(self, value: object) -> None:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        data = text.translate(_LINE_BREAKS).encode() + b"\n"
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def store(self, blobs_dir: Path) -> Stored:
        """Flush what the decoders hold, sync, and move the file into the blob store (a
        blob of this digest stored already is kept as it is). Blocking: call off the loop."""
        self._event("o", self._output.decode(b"", final=True))
        if self.record_input:
            self._event("i", self._input.decode(b"", final=True))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = self._hash.hexdigest()
        blobs_dir.mkdir(parents=True, exist_ok=True)
        target = blob_path(blobs_dir, digest)
        if target.exists():
            self.path.unlink()
        else:
            os.replace(self.path, target)
        return Stored(digest, self.size)

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}
"""Characters that JSON leaves as they are but that line readers (Python's splitlines,
JavaScript) take for line ends: escaped, so each event stays on one line."""
