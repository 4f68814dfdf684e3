"""Prometheus metrics and the HTTP endpoint that serves them beside ``/readyz`` and ``/livez``.

Rules:
1. ``Metrics`` owns its own ``CollectorRegistry`` (never the global one), so tests and several
   daemons in one process do not collide.
2. State is read on scrape from the ``StatusProvider`` (sessions, prefixes, messages, GR,
   datastore sync, kernel routes): the daemon keeps one source of truth and pays nothing between
   scrapes. Events that a snapshot cannot show are counters the daemon bumps through methods:
   FSM transitions by reason, netlink errors, kernel route changes, datastore events and
   rejected records; RIB sizes are gauges it sets when they change.
3. The HTTP server binds 127.0.0.1 by default on port 9179 (``DEFAULT_METRICS_PORT``): metrics
   carry peer addresses, so exposing them is an explicit choice (``--metrics-listen``).
4. ``/readyz`` and ``/livez`` answer 200 or 503 with the reason text, from the same health
   function as ``bgpd health`` (``bgpd.control.server.HealthChecker.check``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from bgpd.health import HealthResult
from bgpd.net.heap import heap_usage
from bgpd.session.events import State
from bgpd.status import BFD_STATES, StatusProvider

DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_METRICS_PORT = 9179
SESSION_STATES = tuple(state.bird_name for state in State)
ESTABLISHED = State.ESTABLISHED.bird_name
REQUEST_TIMEOUT = 10.0  # seconds a client has to send its request head

log = structlog.get_logger("bgpd.metrics")

HealthFunction = Callable[[str], HealthResult]


class _StatusCollector(Collector):
    """Everything a ``StatusProvider`` snapshot can tell, read at scrape time (rule 2)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        provider = self._metrics.provider
        if provider is None:
            return
        now = self._metrics.clock()
        status = provider.daemon_status()
        info = GaugeMetricFamily(
            "bgpd_info", "bgpd identity", labels=["version", "node", "router_id"]
        )
        info.add_metric([status.version, status.node, status.router_id], 1)
        yield info
        yield GaugeMetricFamily(
            "bgpd_start_time_seconds", "When the daemon started (epoch)", value=status.started
        )
        yield GaugeMetricFamily(
            "bgpd_last_reconfiguration_time_seconds",
            "When the configuration was last applied (epoch)",
            value=status.last_reconfigured,
        )
        yield GaugeMetricFamily(
            "bgpd_datastore_in_sync",
            "1 when the datastore snapshot is complete and current",
            value=int(status.datastore_in_sync),
        )
        yield GaugeMetricFamily(
            "bgpd_datastore_rejected_keys",
            "Datastore keys whose current value is rejected (their last good value, if any, "
            "stays applied)",
            value=len(status.rejected_keys),
        )
        yield GaugeMetricFamily(
            "bgpd_graceful_restart_recovering",
            "1 while the daemon restarts gracefully and waits for its peers' End-of-RIB",
            value=int(status.graceful_restart_recovering),
        )
        yield GaugeMetricFamily(
            "bgpd_kernel_routes", "Routes installed in the kernel", value=status.kernel_routes
        )
        yield GaugeMetricFamily(
            "bgpd_problems", "Configuration or datastore problems", value=len(status.problems)
        )
        try:
            tasks = len(asyncio.all_tasks())  # scrapes run on the daemon's loop
        except RuntimeError:  # no running loop: a scrape from a test or a tool
            tasks = None
        if tasks is not None:
            yield GaugeMetricFamily(
                "bgpd_asyncio_tasks",
                "asyncio tasks alive in the daemon (flat when idle)",
                value=tasks,
            )
        yield from self._heap()
        groups = GaugeMetricFamily(
            "bgpd_update_groups",
            "Update groups: route-reflector clients sharing one Adj-RIB-Out, per family",
            labels=["family"],
        )
        members = GaugeMetricFamily(
            "bgpd_update_group_members", "Sessions in update groups, per family", labels=["family"]
        )
        by_family: dict[str, list[int]] = {}
        for family, count in status.update_groups:
            by_family.setdefault(family, []).append(count)
        for family, counts in sorted(by_family.items()):
            groups.add_metric([family], len(counts))
            members.add_metric([family], sum(counts))
        yield groups
        yield members
        unroutable = GaugeMetricFamily(
            "bgpd_encap_unsupported_pool",
            "1 for each IP pool whose tunnel encapsulation this kernel cannot build",
            labels=["pool"],
        )
        for pool in status.unroutable_pools:
            unroutable.add_metric([pool], 1)
        yield unroutable
        yield from self._sessions(provider, now)
        yield from self._bfd(provider)
        drops = CounterMetricFamily(
            "bgpd_bfd_packets_dropped",
            "BFD packets discarded, by RFC 5880 §6.8.6 / RFC 5881 §5 reason",
            labels=["reason"],
        )
        for reason, count in sorted(self._metrics.bfd_drops().items()):
            drops.add_metric([reason], count)
        yield drops

    @staticmethod
    def _heap() -> Iterator[Metric]:
        usage = heap_usage()
        heap = GaugeMetricFamily(
            "bgpd_heap_bytes",
            "glibc malloc: bytes handed out (in_use) and held free (free)",
            labels=["kind"],
        )
        if usage.malloc_in_use is not None and usage.malloc_free is not None:
            heap.add_metric(["in_use"], usage.malloc_in_use)
            heap.add_metric(["free"], usage.malloc_free)
        yield heap
        yield GaugeMetricFamily(
            "bgpd_python_allocated_blocks",
            "Blocks in use in CPython's small-object allocator (objects alive)",
            value=usage.python_blocks,
        )

    def _bfd(self, provider: StatusProvider) -> Iterator[Metric]:
        labels = ["peer", "peer_ip"]
        state = GaugeMetricFamily(
            "bgpd_bfd_session_state",
            "1 for the BFD session's current state (RFC 5880 §4.1)",
            labels=[*labels, "state"],
        )
        transitions = CounterMetricFamily(
            "bgpd_bfd_session_transitions",
            "Times the BFD session went up and down",
            labels=[*labels, "direction"],
        )
        interval = GaugeMetricFamily(
            "bgpd_bfd_tx_interval_seconds", "Current transmit interval before jitter", labels=labels
        )
        detection = GaugeMetricFamily(
            "bgpd_bfd_detection_time_seconds", "Current detection time", labels=labels
        )
        holds = GaugeMetricFamily(
            "bgpd_bfd_holds_bgp",
            "1 while BFD holds the BGP session back (not Up, or dampened)",
            labels=labels,
        )
        for peer in provider.peer_statuses():
            bfd, key = peer.bfd, [peer.name, peer.peer_ip]
            if bfd is None:
                continue
            for name in BFD_STATES:
                state.add_metric([*key, name], int(bfd.state == name))
            transitions.add_metric([*key, "up"], bfd.ups)
            transitions.add_metric([*key, "down"], bfd.downs)
            interval.add_metric(key, bfd.tx_interval_ms / 1000)
            detection.add_metric(key, bfd.detection_time_ms / 1000)
            holds.add_metric(key, int(peer.bfd_holds))
        yield from (state, transitions, interval, detection, holds)

    def _sessions(self, provider: StatusProvider, now: float) -> Iterator[Metric]:
        labels = ["peer", "peer_ip"]
        state = GaugeMetricFamily(
            "bgpd_bgp_session_state",
            "1 for the session's current RFC 4271 state",
            labels=[*labels, "state"],
        )
        established = GaugeMetricFamily(
            "bgpd_bgp_session_established", "1 when the session is Established", labels=labels
        )
        uptime = GaugeMetricFamily(
            "bgpd_bgp_session_uptime_seconds",
            "Seconds since the session became Established (0 when it is not)",
            labels=labels,
        )
        peer_as = GaugeMetricFamily("bgpd_bgp_peer_as", "The peer's AS number", labels=labels)
        counters = {
            name: CounterMetricFamily(f"bgpd_bgp_{name}", text, labels=labels)
            for name, text in (
                ("messages_received", "BGP messages received"),
                ("messages_sent", "BGP messages sent"),
                ("updates_received", "UPDATE messages received"),
                ("updates_sent", "UPDATE messages sent"),
            )
        }
        prefixes = GaugeMetricFamily(
            "bgpd_bgp_prefixes",
            "Prefixes received, accepted by import policy, and advertised",
            labels=[*labels, "direction"],
        )
        graceful = GaugeMetricFamily(
            "bgpd_bgp_graceful_restart",
            "1 when the session is in a graceful-restart role (helper or restarting)",
            labels=[*labels, "role"],
        )
        for peer in provider.peer_statuses():
            key = [peer.name, peer.peer_ip]
            for name in SESSION_STATES:
                state.add_metric([*key, name], int(peer.state == name))
            up = peer.state == ESTABLISHED
            established.add_metric(key, int(up))
            uptime.add_metric(key, max(0.0, now - peer.since) if up else 0.0)
            peer_as.add_metric(key, peer.peer_as)
            counters["messages_received"].add_metric(key, peer.messages_in)
            counters["messages_sent"].add_metric(key, peer.messages_out)
            counters["updates_received"].add_metric(key, peer.updates_in)
            counters["updates_sent"].add_metric(key, peer.updates_out)
            prefixes.add_metric([*key, "received"], peer.prefixes_received)
            prefixes.add_metric([*key, "accepted"], peer.prefixes_accepted)
            prefixes.add_metric([*key, "advertised"], peer.prefixes_advertised)
            for role in ("helper", "restarting"):
                graceful.add_metric([*key, role], int(peer.graceful_restart == role))
        yield from (state, established, uptime, peer_as, *counters.values(), prefixes, graceful)


class Metrics:
    """The daemon's metrics: a registry, a provider read on scrape, and event counters."""

    def __init__(
        self, provider: StatusProvider | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = CollectorRegistry()
        self.provider = provider
        self.clock = clock
        self.bfd_drops: Callable[[], Mapping[str, int]] = dict  # the BFD edge's drop counters
        self._fsm_transitions = Counter(
            "bgpd_bgp_fsm_transitions",
            "Session state changes, by new state and reason token",
            ["peer", "state", "reason"],
            registry=self.registry,
        )
        self._netlink_errors = Counter(
            "bgpd_kernel_netlink_errors",
            "Kernel route operations the kernel refused",
            ["operation"],
            registry=self.registry,
        )
        self._kernel_changes = Counter(
            "bgpd_kernel_route_changes",
            "Kernel routes installed, replaced or removed",
            ["action"],
            registry=self.registry,
        )
        self._datastore_events = Counter(
            "bgpd_datastore_events",
            "Datastore events applied, by kind (put, delete, resync)",
            ["kind"],
            registry=self.registry,
        )
        self._datastore_rejected = Counter(
            "bgpd_datastore_rejected_records",
            "Datastore records ignored because they did not validate",
            ["resource", "reason"],
            registry=self.registry,
        )
        self._rib_routes = Gauge(
            "bgpd_rib_routes",
            "Routes held, by table (adj-rib-in, loc-rib, adj-rib-out) and family",
            ["table", "family"],
            registry=self.registry,
        )
        self.registry.register(_StatusCollector(self))

    def attach(self, provider: StatusProvider) -> None:
        """Read state from ``provider`` from the next scrape on."""
        self.provider = provider

    def fsm_transition(self, peer: str, state: str, reason: str) -> None:
        self._fsm_transitions.labels(peer, state, reason).inc()

    def netlink_error(self, operation: str, count: int = 1) -> None:
        self._netlink_errors.labels(operation).inc(count)

    def kernel_route_change(self, action: str, count: int = 1) -> None:
        self._kernel_changes.labels(action).inc(count)

    def datastore_event(self, kind: str, count: int = 1) -> None:
        self._datastore_events.labels(kind).inc(count)

    def datastore_rejected(self, resource: str, reason: str) -> None:
        self._datastore_rejected.labels(resource, reason).inc()

    def set_rib_size(self, table: str, family: str, routes: int) -> None:
        self._rib_routes.labels(table, family).set(routes)

    def exposition(self) -> bytes:
        """The text format of every metric, as ``/metrics`` serves it."""
        return generate_latest(self.registry)


# -- HTTP ----------------------------------------------------------------------------------------

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def _response(code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def http_answer(method: str, target: str, metrics: Metrics, health_fn: HealthFunction) -> bytes:
    """The full HTTP response to one request (rule 4)."""
    path = target.split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return _response(405, b"method not allowed\n")
    if path == "/metrics":
        body, content_type = metrics.exposition(), CONTENT_TYPE_LATEST
        response = _response(200, body, content_type)
    elif path in ("/readyz", "/livez"):
        result = health_fn("ready" if path == "/readyz" else "live")
        response = _response(200 if result.ok else 503, f"{result.reason}\n".encode())
    else:
        response = _response(404, b"not found\n")
    if method == "HEAD":
        return response.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    return response


async def _serve_request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    metrics: Metrics,
    health_fn: HealthFunction,
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3:
            writer.write(_response(405, b"bad request\n"))
        else:
            writer.write(http_answer(parts[0], parts[1], metrics, health_fn))
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass
    except ConnectionError:
        pass
    except Exception:
        log.exception("metrics request failed")
        with contextlib.suppress(ConnectionError):
            writer.write(_response(503, b"internal error\n"))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve_http(
    host: str, port: int, metrics: Metrics, health_fn: HealthFunction
) -> asyncio.Server:
    """Start serving ``/metrics``, ``/readyz`` and ``/livez``; close the returned server to stop.

    ``port`` 0 picks a free port (``server.sockets[0].getsockname()``).
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_request(reader, writer, metrics, health_fn)

    server = await asyncio.start_server(handle, host, port)
    log.info("metrics listening", host=host, port=server.sockets[0].getsockname()[1])
    return server
