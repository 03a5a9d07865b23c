"""The in-sandbox end of egress: loopback listeners that forward to the host's proxy socket.

Mounted read-only into a sandbox and run with the sandbox's own Python, standard library only.
It wraps the runner: ``shim.py SOCKET PROXY_PORT [ADDRESS:PORT=NAME ...] -- RUNNER ARGV...``
forks a child that serves, then the calling process becomes the runner (``exec``, with
``HTTPS_PROXY`` and ``HTTP_PROXY`` set to the relay), so the runner keeps process id 1 and stops
the shim with everything else when its job ends.

- ``127.0.0.1:PROXY_PORT`` relays bytes as they come; clients that honour ``HTTPS_PROXY``
  (Python's ``urllib``, ``requests``, pip) speak CONNECT to the host's proxy through it.
- each ``ADDRESS:PORT=NAME`` (the sandbox's ``/etc/hosts`` maps NAME to ADDRESS) asks the proxy
  for ``CONNECT NAME:PORT`` itself, so clients that ignore proxies (Node's ``https`` and
  ``fetch``) reach allowed names unmodified.

Nothing here is a security boundary: the code may kill or replace this process, and it runs
with the code's own rights. The host's proxy decides every connection.
"""

import os
import socket
import sys
import threading

_CHUNK = 65536
_MAX_HEAD = 8192
_MAX_OPEN = 64


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(_CHUNK)
            if not data:
                break
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RD)
            except OSError:
                pass


def _relay(client: socket.socket, upstream: socket.socket, slots: threading.Semaphore) -> None:
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()
    slots.release()


def _open_tunnel(path: str, name: str, port: int) -> "socket.socket | None":
    """A connection to the proxy with ``name:port`` already granted, or None when refused."""
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
        upstream.sendall(b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (name.encode(), port, name.encode(), port))
        head = b""
        while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
            byte = upstream.recv(1)  # one byte at a time: nothing after the head may be consumed
            if not byte:
                break
            head += byte
        if head.startswith(b"HTTP/1.1 200 "):
            return upstream
        sys.stderr.write("egress: %s:%d refused: %s\n" % (name, port, head.split(b"\r\n", 1)[0].decode("ascii", "replace")))
    except OSError as error:
        sys.stderr.write("egress: %s:%d failed: %s\n" % (name, port, error))
    upstream.close()
    return None


def _serve(listener: socket.socket, path: str, target: "tuple[str, int] | None", slots: threading.Semaphore) -> None:
    while True:
        client, _ = listener.accept()
        if not slots.acquire(blocking=False):
            client.close()
            continue
        threading.Thread(target=_handle, args=(client, path, target, slots), daemon=True).start()


def _handle(client: socket.socket, path: str, target: "tuple[str, int] | None", slots: threading.Semaphore) -> None:
    upstream: "socket.socket | None"
    if target is None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(path)
        except OSError:
            upstream.close()
            upstream = None
    else:
        upstream = _open_tunnel(path, target[0], target[1])
    if upstream is None:
        client.close()
        slots.release()
        return
    _relay(client, upstream, slots)


def _listen(address: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(64)
    return listener


def _parse(argv: "list[str]") -> "tuple[str, int, list[tuple[str, int, str]], list[str]]":
    split = argv.index("--")
    path, proxy_port = argv[0], int(argv[1])
    mappings: "list[tuple[str, int, str]]" = []
    for item in argv[2:split]:
        where, name = item.split("=", 1)
        address, port = where.rsplit(":", 1)
        mappings.append((address, int(port), name))
    return path, proxy_port, mappings, argv[split + 1:]


def main(argv: "list[str]") -> None:
    path, proxy_port, mappings, runner = _parse(argv)
    listeners: "list[tuple[socket.socket, tuple[str, int] | None]]" = [(_listen("127.0.0.1", proxy_port), None)]
    listeners += [(_listen(address, port), (name, port)) for address, port, name in mappings]
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)  # the runner's job and result channels are not ours
        os.dup2(null, 0)
        os.dup2(null, 1)
        slots = threading.Semaphore(_MAX_OPEN)
        for listener, target in listeners[1:]:
            threading.Thread(target=_serve, args=(listener, path, target, slots), daemon=True).start()
        _serve(listeners[0][0], path, None, slots)
        os._exit(0)
    for listener, _ in listeners:  # bound before the runner starts: no connection can come too early
        listener.close()
    proxy = "http://127.0.0.1:%d" % proxy_port
    environment = dict(os.environ)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        environment[name] = proxy
    os.execve(runner[0], runner, environment)


if __name__ == "__main__":
    main(sys.argv[1:])
