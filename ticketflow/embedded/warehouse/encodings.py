"""Incremental decoding of request bodies by `Content-Encoding`.

clickhouse-connect compresses each Native block as its own frame (lz4 or zstd), so a body is
many frames back to back; gzip bodies may have several members. One loop serves all codecs:
when a decompressor reaches the end of its frame, a fresh one takes over its unused input.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Protocol

import lz4.frame
import zstandard

from ticketflow.embedded.warehouse.protocol import CANNOT_DECOMPRESS, ClickHouseError


class _Decompressor(Protocol):
    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes) -> bytes: ...


_CODECS: dict[str, Callable[[], _Decompressor]] = {
    "lz4": lz4.frame.LZ4FrameDecompressor,
    "zstd": lambda: zstandard.ZstdDecompressor().decompressobj(),
    "gzip": lambda: zlib.decompressobj(wbits=31),
    "x-gzip": lambda: zlib.decompressobj(wbits=31),
    "deflate": zlib.decompressobj,
}


class BodyDecoder:
    """Turns the raw body, chunk by chunk, into the bytes the client meant."""

    def __init__(self, content_encoding: str | None):
        encoding = (content_encoding or "").strip().lower()
        if encoding in ("", "identity"):
            self._factory = None
        elif encoding in _CODECS:
            self._factory = _CODECS[encoding]
        else:
            raise ClickHouseError.of(
                CANNOT_DECOMPRESS, f"Unknown HTTP Content-Encoding '{encoding}'", 415
            )
        self._encoding = encoding
        self._current: _Decompressor | None = None

    def decode(self, chunk: bytes) -> bytes:
        if self._factory is None:
            return chunk
        out = []
        data = chunk
        try:
            while data:
                if self._current is None:
                    self._current = self._factory()
                out.append(self._current.decompress(data))
                if not self._current.eof:
                    break
                data = self._current.unused_data
                self._current = None
        except (RuntimeError, zlib.error, zstandard.ZstdError) as exc:
            raise ClickHouseError.of(
                CANNOT_DECOMPRESS, f"Cannot decode {self._encoding} request body: {exc}"
            ) from exc
        return b"".join(out)

    def finish(self) -> None:
        """Fail if the body ended inside a frame (a truncated upload must not half-insert)."""
        if self._current is not None:
            raise ClickHouseError.of(
                CANNOT_DECOMPRESS, f"The {self._encoding} request body ended inside a frame"
            )
