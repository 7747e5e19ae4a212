"""One uvicorn listener as the agent runs it: signals left to the agent, a shutdown that keeps to a
deadline whatever the clients do, and the process limits a server sets for itself at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time
from collections.abc import Generator

import uvicorn

__all__ = ["Listener", "raise_open_file_limit"]

log = logging.getLogger(__name__)

# After the drain, aborted connections wake the requests still waiting on them; this long at most.
_WAKE_SECONDS = 0.5


class Listener(uvicorn.Server):
    """A uvicorn server for the agent, which runs two at once and handles the signals itself.

    uvicorn's own shutdown waits for every connection to close and only then cancels request tasks,
    logging each cancellation with a traceback; a client that keeps a request half-sent holds it for
    the whole graceful timeout. Here the drain ends at `drain_deadline` (monotonic, set by the agent
    when it stops): what is still open then is aborted, which ends the requests waiting on those
    clients without cancelling anything.
    """

    drain_deadline: float | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    @property
    def port(self) -> int:
        return int(self.servers[0].sockets[0].getsockname()[1])

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()  # idle ones close now; requests in progress close after their answer
        deadline = self.drain_deadline if self.drain_deadline is not None else time.monotonic()
        # uvicorn signals nothing when its sets empty; polling them is what its own shutdown does too.
        while (state.connections or state.tasks) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if state.connections:
            log.info("closing %d connection(s) still open after the drain", len(state.connections))
            for connection in list(state.connections):
                abort = getattr(connection, "abort", None)
                if abort is not None:
                    abort()
                else:  # pragma: no cover - every agent listener uses the guarded protocol
                    connection.transport.abort()
        if state.tasks:
            await asyncio.wait(set(state.tasks), timeout=_WAKE_SECONDS)
        for task in list(state.tasks):  # pragma: no cover - a request stuck on something else than its client
            log.warning("cancelling a request still running after the drain")
            task.cancel()


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit, as servers do; returns the soft limit now in force.

    The connection cap, not EMFILE at accept, is then what bounds connections (Docker's default
    soft limit is 1024 under a hard limit of 524288 or more).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20
