"""The control socket: BIRD's protocol on a unix socket, plus our JSON side channel.

Rules:
1. One asyncio server per socket path; each connection gets BIRD's greeting, then any number of
   commands, one per line, each answered in full before the next is read (BIRD's CLI is
   sequential). The reply text comes from ``bgpd.control.birdproto``; this module does IO only.
2. Socket files follow BIRD and calico-node: the directory is created, a stale socket left by a
   dead daemon is removed, a live one is refused (two daemons must not share a socket), the
   socket is made mode 0660, and it is removed again on close.
3. Views (birdproto rule 7): ``bird.ctl`` serves the IPv4 view and ``bird6.ctl`` the IPv6 view, as
   BIRD 1.6's two daemons did for calico-node; ``serve_control_sockets`` opens both.
4. Actions go through ``ControlActions`` (the daemon implements it); the server never touches
   daemon state. BIRD's ``configure`` asks for a reload, BIRD's ``down`` for a withdrawing stop.
5. JSON side channel (not in BIRD; used by ``bgpd show|status|health|stop|reload``), one line
   each, answered with ``0000 <json>``:
   ``json status`` | ``json peers`` | ``json routes [PREFIX]`` | ``json explain PREFIX`` |
   ``json health ready [THRESHOLD_SECONDS]`` | ``json health live`` | ``json reload`` |
   ``json stop graceful|withdraw [MESSAGE...]``. ``json peers``/``routes`` ignore the socket's view.
6. A provider that raises answers that one command with an error line and is logged; the
   connection and the server stay up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import structlog

from bgpd.control import birdproto
from bgpd.control.birdproto import (
    Configure,
    Down,
    JsonCommand,
    Reply,
    ShowBfdSessions,
    ShowProtocols,
    ShowRoute,
    ShowStatus,
    View,
)
from bgpd.health import DEFAULT_THRESHOLD, HealthResult, liveness, readiness
from bgpd.status import StatusProvider

DEFAULT_CONTROL_SOCKET = "/var/run/calico/bird.ctl"
DEFAULT_NODENAME_FILE = "/var/lib/calico/nodename"
SOCKET_MODE = 0o660

log = structlog.get_logger("bgpd.control")


class ControlActions(Protocol):
    """What an operator can ask the daemon to do (the daemon implements this)."""

    def request_reload(self) -> None: ...

    def request_stop(self, withdraw: bool, message: str) -> None: ...


class ControlSocketInUse(RuntimeError):
    """Another live process answers on the socket path."""


def ipv6_socket_path(path: str) -> str:
    """``/var/run/calico/bird.ctl`` -> ``/var/run/calico/bird6.ctl`` (calico-node's layout)."""
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}6.{suffix}" if dot and "/" not in suffix else f"{path}6"


def local_utc_offset(now: float) -> int:
    """Seconds east of UTC of the local time zone at ``now`` (BIRD prints local time)."""
    return time.localtime(now).tm_gmtoff


class HealthChecker:
    """Readiness and liveness from a provider (the one implementation behind ``bgpd health``,
    ``json health`` and HTTP ``/readyz`` ``/livez``).

    Readiness's start mark is the mtime of calico-node's nodename file, as in Calico's
    ``checkBIRDReady``; without that file (a standalone peer) it is the daemon's start time.
    ``failed_tasks`` reports supervised tasks that died (the datastore watcher, ...).
    """

    def __init__(
        self,
        provider: StatusProvider,
        nodename_file: str = DEFAULT_NODENAME_FILE,
        failed_tasks: Callable[[], Sequence[str]] = tuple,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._provider = provider
        self._nodename_file = nodename_file
        self._failed_tasks = failed_tasks
        self._clock = clock

    def _start_mark(self, started: float) -> float:
        try:
            return os.stat(self._nodename_file).st_mtime
        except OSError:
            return started

    def ready(self, threshold: float = DEFAULT_THRESHOLD, view: View = "all") -> HealthResult:
        status = self._provider.daemon_status()
        peers = birdproto.peers_in_view(self._provider.peer_statuses(), view)
        start = self._start_mark(status.started)
        return readiness(peers, status, start, self._clock(), threshold)

    def live(self) -> HealthResult:
        return liveness(self._provider.daemon_status(), tuple(self._failed_tasks()))

    def check(self, kind: str) -> HealthResult:
        """``kind`` is ``ready`` or ``live`` (the HTTP server's entry point)."""
        return self.ready() if kind == "ready" else self.live()


class ControlServer:
    """A BIRD-compatible control socket at ``path`` serving one view."""

    def __init__(
        self,
        path: str,
        provider: StatusProvider,
        actions: ControlActions,
        health: HealthChecker | None = None,
        view: View = "ipv4",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._provider = provider
        self._actions = actions
        self._health = health or HealthChecker(provider)
        self._view: View = view
        self._clock = clock
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        directory = Path(self.path).parent
        directory.mkdir(parents=True, exist_ok=True)
        await _remove_stale_socket(self.path)
        self._server = await asyncio.start_unix_server(
            self._serve, path=self.path, limit=birdproto.MAX_COMMAND_LENGTH + 2
        )
        os.chmod(self.path, SOCKET_MODE)
        log.info("control socket listening", path=self.path, view=self._view)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            version = self._provider.daemon_status().version
            writer.write(birdproto.greeting(version).encode())
            await writer.drain()
            while True:
                try:
                    raw = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    too_long = birdproto.error(birdproto.COMMAND_TOO_LONG, "Command too long")
                    writer.write(too_long.encode().encode())
                    await writer.drain()
                    return
                line = raw.decode("utf-8", errors="replace").strip()
                writer.write(self.answer(line).encode())
                await writer.drain()
        except (ConnectionError, BrokenPipeError):
            return
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()

    def answer(self, line: str) -> str:
        """The full reply text to one command line."""
        try:
            command = birdproto.parse_command(line)
        except birdproto.CommandError as refused:
            return refused.reply.encode()
        try:
            return self._execute(command).encode()
        except Exception as exc:  # rule 6: one failed command, not a failed server
            log.exception("control command failed", command=line)
            return birdproto.error(birdproto.PARSE_ERROR, f"internal error: {exc}").encode()

    def _execute(self, command: birdproto.Command) -> Reply:
        if isinstance(command, ShowStatus | ShowProtocols | ShowRoute | ShowBfdSessions):
            now = self._clock()
            return birdproto.render_show(
                command, self._provider, self._view, now, local_utc_offset(now)
            )
        if isinstance(command, Configure):
            self._actions.request_reload()
            return Reply(
                ((birdproto.READING_CONFIGURATION, "Reading configuration from datastore"),),
                4,
                "Reconfiguration in progress",
            )
        if isinstance(command, Down):
            self._actions.request_stop(True, "Shutdown requested")
            return birdproto.error(birdproto.SHUTDOWN_REQUESTED, "Shutdown requested")
        return self._json(command)

    def _json(self, command: JsonCommand) -> Reply:
        topic, args = command.topic, command.args
        if topic == "status":
            return birdproto.json_reply(birdproto.status_json(self._provider.daemon_status()))
        if topic == "peers":
            return birdproto.json_reply(birdproto.peers_json(self._provider.peer_statuses()))
        if topic == "routes":
            prefix = args[0] if args else None
            if prefix is not None and not birdproto.is_network(prefix):
                return birdproto.SYNTAX_ERROR
            routes = self._provider.route_statuses(prefix)
            return birdproto.json_reply(birdproto.routes_json(routes))
        if topic == "explain":
            if len(args) != 1 or not birdproto.is_network(args[0]):
                return birdproto.SYNTAX_ERROR
            return birdproto.json_reply(self._provider.explain(args[0]))
        if topic == "health":
            return self._json_health(args)
        if topic == "reload":
            self._actions.request_reload()
            return birdproto.json_reply({"ok": True})
        if not args or args[0] not in ("graceful", "withdraw"):
            return birdproto.SYNTAX_ERROR
        withdraw = args[0] == "withdraw"
        self._actions.request_stop(withdraw, " ".join(args[1:]))
        return birdproto.json_reply({"ok": True, "withdraw": withdraw})

    def _json_health(self, args: tuple[str, ...]) -> Reply:
        if not args or args[0] not in ("ready", "live"):
            return birdproto.SYNTAX_ERROR
        if args[0] == "live":
            return birdproto.json_reply(asdict(self._health.live()))
        try:
            threshold = float(args[1]) if len(args) > 1 else DEFAULT_THRESHOLD
        except ValueError:
            return birdproto.SYNTAX_ERROR
        return birdproto.json_reply(asdict(self._health.ready(threshold)))


async def _remove_stale_socket(path: str) -> None:
    """Remove a socket file nobody answers on; refuse one a live process serves (rule 2)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlSocketInUse(f"{path} exists and is not a socket")
    try:
        _, writer = await asyncio.open_unix_connection(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    raise ControlSocketInUse(f"another process is serving {path}")


@contextlib.asynccontextmanager
async def serve_control_sockets(
    path: str,
    provider: StatusProvider,
    actions: ControlActions,
    health: HealthChecker | None = None,
    ipv6: bool = True,
) -> AsyncIterator[None]:
    """Serve ``path`` (IPv4 view) and, with ``ipv6``, its ``6`` sibling (IPv6 view) (rule 3)."""
    checker = health or HealthChecker(provider)
    servers = [ControlServer(path, provider, actions, checker, "ipv4")]
    if ipv6:
        servers.append(ControlServer(ipv6_socket_path(path), provider, actions, checker, "ipv6"))
    async with contextlib.AsyncExitStack() as stack:
        for server in servers:
            await stack.enter_async_context(server)
        yield
