"""A loopback TCP proxy that loses the first answers: the request arrives, its answer never does."""

from __future__ import annotations

import socket
import threading


class DropFirstAnswers:
    """Forwards to 127.0.0.1:``upstream``; the first ``drops`` connections lose the answer.

    On those it forwards the request, waits until the service starts answering (so the
    request was surely handled), then closes the client's side without sending a byte.
    """

    def __init__(self, upstream: int, drops: int = 1) -> None:
        self.upstream = upstream
        self.drops_left = drops
        self.dropped = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DropFirstAnswers:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                drop = self.drops_left > 0
                self.drops_left -= int(drop)
            threading.Thread(target=self._serve, args=(conn, drop), daemon=True).start()

    def _serve(self, conn: socket.socket, drop: bool) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream))
        threading.Thread(target=_pipe, args=(conn, up), daemon=True).start()
        if drop:
            up.recv(1)  # the service has handled the request and begun its answer
            with self._lock:
                self.dropped += 1
            conn.close()
            up.close()
            return
        _pipe(up, conn)
        conn.close()
        up.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
