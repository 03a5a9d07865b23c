"""The executor clients this process shares, kept where the entry-point module can reach them.

:mod:`sandbox_selfmanaged.client` makes the clients (it imports httpx); the provider's
``sandbox_shutdown`` hook closes them. The cache lives here, in a module that imports nothing
heavy, so that the hook can close what exists without importing the client module, and no module
has to import the entry-point module or look another one up in ``sys.modules``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from sandbox_selfmanaged.client import ExecutorClient


class Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closeable)


class ClientCache(Generic[C]):
    """The most recently used clients, by configuration; the least recently used is closed past ``size``. Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._clients: OrderedDict[Hashable, C] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, factory: Callable[[], C]) -> C:
        """The client for ``key``, made by ``factory`` when there is none."""
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = factory()
                while len(self._clients) > self.size:
                    self._clients.popitem(last=False)[1].close()
            else:
                self._clients.move_to_end(key)
            return client

    def close_all(self) -> None:
        """Close every client (their keep-alive connections); later calls make new ones."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()


CLIENTS: ClientCache[ExecutorClient] = ClientCache(size=8)
"""This process's executor clients (:func:`sandbox_selfmanaged.client.client_for` fills it)."""
