"""Rejected connections: every one counted, a source's first one logged, the rest summarised
once per interval (bgpd/net/ratelimit.py, bgpd/net/listener.py rule 2; issue 20 point 3)."""

from __future__ import annotations

import ipaddress

from structlog.testing import capture_logs

from bgpd.net.listener import Listener
from bgpd.net.ratelimit import RejectionLog, RejectionSummary


def test_first_rejection_per_source_gets_a_line_then_one_summary_per_interval() -> None:
    rejections = RejectionLog(interval=60.0)
    assert rejections.reject("10.0.0.1", 0.0) is True
    assert [rejections.reject("10.0.0.1", t) for t in (1.0, 2.0, 3.0)] == [False] * 3
    assert rejections.reject("10.0.0.2", 4.0) is True
    assert rejections.reject("10.0.0.2", 5.0) is False
    assert rejections.due() == 60.0
    assert rejections.close(59.9) is None  # not yet: at most one summary per interval
    assert rejections.close(60.0) == RejectionSummary(
        connections=4, sources=2, top=(("10.0.0.1", 3), ("10.0.0.2", 1))
    )
    assert rejections.due() is None and rejections.close(1000.0) is None


def test_a_steady_flood_from_one_source_is_one_line_per_interval() -> None:
    rejections = RejectionLog(interval=60.0)
    lines = 0
    summaries: list[RejectionSummary] = []
    for tick in range(600 * 100):  # 100 connections a second for ten minutes
        now = tick / 100
        summary = rejections.close(now)
        if summary is not None:
            summaries.append(summary)
        lines += rejections.reject("192.0.2.9", now)
    assert lines == 1  # the source is not new again while it keeps being rejected
    assert len(summaries) == 9
    assert all(s.sources == 1 and s.connections == 6000 for s in summaries[1:])


def test_a_source_quiet_for_a_whole_window_is_new_again() -> None:
    rejections = RejectionLog(interval=60.0)
    assert rejections.reject("10.0.0.1", 0.0)
    assert rejections.close(60.0) is None  # nothing was left without a line
    assert not rejections.reject("10.0.0.1", 61.0)  # rejected in the window just closed
    assert rejections.close(121.0) is not None
    assert rejections.reject("10.0.0.1", 500.0)  # quiet since: its own line again


def test_many_sources_are_bounded_in_lines_and_memory() -> None:
    rejections = RejectionLog(interval=60.0, first_lines=10, max_sources=100)
    lines = sum(rejections.reject(f"10.1.{i // 256}.{i % 256}", 1.0) for i in range(1000))
    assert lines == 10
    summary = rejections.close(61.0)
    assert summary is not None
    assert summary.connections == 990 and summary.untracked == 900 and summary.sources == 90
    assert len(summary.top) == 5


async def test_listener_counts_every_rejection_and_logs_a_flood_in_few_lines() -> None:
    now = [0.0]
    listener = Listener(lambda *_: False, "127.0.0.1", 0, clock=lambda: now[0])
    with capture_logs() as logs:
        for tick in range(1000):
            now[0] = tick * 0.1  # 1,000 connections over 100 s from three sources
            listener.reject(ipaddress.ip_address(f"10.0.0.{tick % 3 + 1}"))
        await listener.close()  # the last window's summary is not lost at stop
    assert listener.rejected == 1000
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    firsts = [e for e in warnings if e["event"] == "connection rejected: no configured peer"]
    summaries = [e for e in warnings if "connections" in e]
    assert sorted(e["address"] for e in firsts) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert len(summaries) == 2 and len(warnings) == 5
    first_summary = "rejected 597 more connections from 3 sources: no configured peer"
    assert summaries[0]["event"] == first_summary
    assert sum(e["connections"] for e in summaries) + len(firsts) == 1000
    assert summaries[-1]["rejected_total"] == 1000


async def test_listener_summary_timer_is_cancelled_at_close() -> None:
    listener = Listener(lambda *_: False, "127.0.0.1", 0, clock=lambda: 0.0)
    address = ipaddress.ip_address("10.0.0.1")
    listener.reject(address)
    listener.reject(address)
    assert listener._summary_timer is not None  # the summary waits for its interval
    with capture_logs() as logs:
        await listener.close()
    assert listener._summary_timer is None
    assert [e["connections"] for e in logs] == [1]
