"""uvicorn's httptools protocol with a bound on the request head (request line and headers).

uvicorn bounds the head only for h11 (`h11_max_incomplete_event_size`); with httptools, its
default when installed, a head of any size is read into memory before the application sees it.
Measured: a 50 MB header held `/healthz` for 2.2 s and a 100 MB one took 14 s and 300 MB, before
`TransportLimits` could answer 431. This reuses the h11 setting for httptools, so `serve` bounds
the head whichever parser runs.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from graphql_api.transport import error_body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # Bytes received since the current request began, None once its headers are complete.
    # Counted per chunk, so the bound is the limit plus one read (64 KiB at most).
    _head_bytes: int | None = 0

    def data_received(self, data: bytes) -> None:
        limit = self.config.h11_max_incomplete_event_size
        if self._head_bytes is not None and limit is not None:
            self._head_bytes += len(data)
            if self._head_bytes > limit:
                self._refuse(limit)
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def _refuse(self, limit: int) -> None:
        if self.transport.is_closing():
            return
        body = error_body(f"The request line and headers are over {limit} bytes.")
        self.transport.write(
            STATUS_LINE[431]
            + b"content-type: application/json\r\nconnection: close\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        self.transport.close()
