"""What ``bgpd run`` refuses at start (bgpd/daemon.py rule 5): each failure is one
``ConfigError`` naming the setting and its value, which the CLI prints as one line (that
line is checked end to end in tests/netns/test_daemon_e2e.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgpd.config import ConfigError, DaemonConfig, FileSource
from bgpd.control.server import ControlSocketInUse
from bgpd.daemon import Daemon, _bind
from bgpd.datastore import DEFAULT_DATASTORE


async def _raise(error: BaseException) -> None:
    raise error


async def test_an_address_in_use_names_the_setting_and_value() -> None:
    with pytest.raises(ConfigError) as caught:
        await _bind(_raise(OSError(98, "Address already in use")), "--metrics-listen", "1.2.3.4:5")
    assert str(caught.value) == "invalid --metrics-listen '1.2.3.4:5': Address already in use"
    assert (caught.value.name, caught.value.value) == ("--metrics-listen", "1.2.3.4:5")


async def test_an_oserror_without_strerror_keeps_its_text() -> None:
    error = OSError("error while attempting to bind on address ('127.0.0.1', 9179)")
    with pytest.raises(ConfigError, match=r"^invalid --metrics-listen '127\.0\.0\.1:9179': error"):
        await _bind(_raise(error), "--metrics-listen", "127.0.0.1:9179")


async def test_a_served_control_socket_names_the_flag() -> None:
    in_use = ControlSocketInUse("another process is serving /run/calico/bird.ctl")
    with pytest.raises(ConfigError, match=r"^invalid --control-socket '/run/calico/bird\.ctl': "):
        await _bind(_raise(in_use), "--control-socket", "/run/calico/bird.ctl")


async def test_bind_returns_what_it_opened() -> None:
    async def opened() -> str:
        return "server"

    assert await _bind(opened(), "--metrics-listen", "x") == "server"


async def test_a_datastore_file_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "datastore.yaml"
    path.write_text("kind: [BGPPeer\n")
    daemon = Daemon(DaemonConfig(node="node1", datastore=FileSource(path)))
    with pytest.raises(ConfigError) as caught:
        daemon.source.open()
    message = str(caught.value)
    assert message.startswith(f"invalid --datastore 'file:{path}': unreadable: ")
    assert "\n" not in message  # one line, however many YAML's own message has


async def test_a_readable_datastore_file_is_the_first_snapshot() -> None:
    daemon = Daemon(DaemonConfig(node="node1", datastore=FileSource(DEFAULT_DATASTORE)))
    snapshot = daemon.source.open()
    assert snapshot is not None and "node1" in snapshot.nodes
