"""One connection to a single Redis server shared by every concurrent tenant round trip, with
the round trips of one event-loop iteration written together (auto-pipelining).

A tenant round trip is a self-contained exchange: it logs in as the tenant, runs its commands
and logs back in as the service (and selects its database and back), so exchanges may follow
one another on one connection in any order. Writing all the exchanges queued during one loop
iteration with one ``send`` — and reading their replies with one ``recv`` — replaces a loopback
write and a wake-up per request by one per batch, on our side and on Redis's: profiles of the
cached reads showed those system calls as the largest single cost. Replies come back in the
order the exchanges were written, so each exchange takes its count of them from the front.

An exchange whose caller stopped waiting (its deadline passed) still has its replies read and
dropped in turn, so the stream stays in step. A lost connection fails every exchange waiting on
it with :class:`~redis.exceptions.ConnectionError` (the caller may retry: the commands are
idempotent), and the next exchange connects again. Replies are parsed by hiredis, with
redis-py's error classes, so callers see what redis-py would give them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Final

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Command", "PipelinedConnection", "Reply", "pack"]

Command = tuple[str | bytes | int | float, ...]
"""One Redis command and its arguments."""

Reply = object
"""One command's answer as redis-py parses it (bytes, int, list, None), or the
:class:`~redis.exceptions.ResponseError` Redis answered instead."""

_NOT_ENOUGH_DATA: Final = object()


class _Waiting:
    """An exchange written (or about to be) whose replies have not all arrived."""

    __slots__ = ("count", "future", "replies")

    def __init__(self, count: int, future: asyncio.Future[list[Reply]]) -> None:
        self.count = count
        self.future = future
        self.replies: list[Reply] = []


class _Protocol(asyncio.Protocol):
    __slots__ = ("_owner",)

    def __init__(self, owner: PipelinedConnection) -> None:
        self._owner = owner

    def data_received(self, data: bytes) -> None:
        self._owner._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._lost(self, exc)


class PipelinedConnection:
    """A connection to ``host:port`` logged in with ``login`` (e.g. ``AUTH user password``),
    on which exchanges are written in batches and answered in order."""

    __slots__ = (
        "_connecting",
        "_flush_scheduled",
        "_host",
        "_login",
        "_outgoing",
        "_port",
        "_protocol",
        "_reader",
        "_transport",
        "_waiting",
        "database",
        "timeout",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        login: Sequence[Command],
        database: int = 0,
        timeout: float = 0.5,
    ) -> None:
        self._host = host
        self._port = port
        self._login = list(login)
        """The commands that make a fresh connection the service's, in ``database``."""
        self.database = database
        """The database the connection is in between exchanges."""
        self.timeout = timeout
        """How long a round trip (and connecting) may take."""
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._reader = _new_reader()
        self._waiting: deque[_Waiting] = deque()
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False

    async def exchange(self, packed: bytes, count: int) -> list[Reply]:
        """Write ``packed`` (``count`` commands) with the other exchanges of this loop
        iteration; their ``count`` replies, error replies included as exception objects."""
        if self._transport is None:
            await self._connect()
            if self._transport is None:  # lost again before this task ran on
                raise RedisConnectionError("Redis closed the connection")
        # From here to the await, nothing else runs: the exchange is queued on the connection
        # it was checked on, never on a newer one whose replies it could take.
        loop = asyncio.get_running_loop()
        waiting = _Waiting(count, loop.create_future())
        self._waiting.append(waiting)
        self._outgoing.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await waiting.future

    def close(self) -> None:
        """Drop the connection (its state is no longer known); waiting exchanges fail."""
        transport = self._transport
        if transport is not None:
            transport.abort()
            # connection_lost follows from the loop; fail the waiting ones now all the same.
            self._lost(self._protocol, RedisConnectionError("connection closed"))

    async def aclose(self) -> None:
        """Close the connection for good (at shutdown)."""
        self.close()
        # The transport lets go of its socket on the loop's next iteration.
        await asyncio.sleep(0)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outgoing, self._outgoing = self._outgoing, []
        transport = self._transport
        if transport is None:  # lost meanwhile: its exchanges have been failed already
            return
        transport.write(b"".join(outgoing))

    async def _connect(self) -> None:
        # Exchanges arriving while one connects wait for that connection.
        if self._connecting is not None:
            await asyncio.shield(self._connecting)
            if self._transport is None:
                raise RedisConnectionError("could not connect to Redis")
            return
        loop = asyncio.get_running_loop()
        connecting = self._connecting = loop.create_future()
        try:
            async with asyncio.timeout(self.timeout):
                transport, protocol = await loop.create_connection(
                    lambda: _Protocol(self), self._host, self._port
                )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"could not connect to Redis: {exc!r}") from exc
        else:
            self._reader = _new_reader()
            self._transport = transport
            self._protocol = protocol
        finally:
            # Whatever happened — the caller's own deadline may cancel it mid-connect — the
            # exchanges waiting on this attempt wake up, and the next one may try again.
            self._connecting = None
            connecting.set_result(None)
        # The login goes first on the new connection: it is an exchange like any other.
        if self._login:
            waiting = _Waiting(len(self._login), loop.create_future())
            self._waiting.append(waiting)
            transport.write(pack(self._login))
            try:
                replies = await waiting.future
            except BaseException:  # cancelled before the login was answered: unknown state
                self.close()
                raise
            if any(reply != b"OK" for reply in replies):
                self.close()
                raise RedisConnectionError(f"Redis refused the service's login: {replies!r}")

    def _received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = reader.gets()
            except InvalidResponse as exc:  # the stream is garbage: nothing after is sure
                self.close()
                del exc
                return
            if reply is _NOT_ENOUGH_DATA or reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.close()
                return
            head = waiting[0]
            head.replies.append(reply)
            if len(head.replies) == head.count:
                waiting.popleft()
                if not head.future.done():  # a caller past its deadline no longer waits
                    head.future.set_result(head.replies)

    def _lost(self, protocol: _Protocol | None, exc: Exception | None) -> None:
        if protocol is not self._protocol or self._transport is None:
            return  # an older connection's late notice
        self._transport = None
        self._protocol = None
        self._outgoing = []
        error = RedisConnectionError(f"Redis closed the connection: {exc!r}")
        waiting, self._waiting = self._waiting, deque()
        for each in waiting:
            if not each.future.done():
                each.future.set_exception(error)
        # Futures failed with no one left to await them must not warn "never retrieved".
        for each in waiting:
            if each.future.done() and not each.future.cancelled():
                each.future.exception()


def pack(commands: Sequence[Command]) -> bytes:
    """``commands`` in the Redis protocol, as redis-py's ``pack_commands`` would send them (a
    command name with a space is split into its words; an ``int`` in decimal, a ``float`` as
    its ``repr``) in a third of its time: packing showed in profiles of every cached read."""
    parts: list[bytes] = []
    append = parts.append
    for command in commands:
        name = command[0]
        if isinstance(name, str) and " " in name:
            command = (*name.split(), *command[1:])
        append(b"*%d\r\n" % len(command))
        for argument in command:
            if isinstance(argument, bytes):
                encoded = argument
            elif isinstance(argument, str):
                encoded = argument.encode()
            elif isinstance(argument, bool):  # an int, but redis-py refuses it: so do we
                raise TypeError(f"a bool is not a Redis argument: {command!r}")
            elif isinstance(argument, int):
                encoded = b"%d" % argument
            else:
                encoded = repr(argument).encode()
            append(b"$%d\r\n%s\r\n" % (len(encoded), encoded))
    return b"".join(parts)


def _new_reader() -> hiredis.Reader:
    return hiredis.Reader(
        protocolError=InvalidResponse,
        replyError=BaseParser.parse_error,
        notEnoughData=_NOT_ENOUGH_DATA,
    )
