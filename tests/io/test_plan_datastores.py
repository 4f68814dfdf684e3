"""``bgpd plan`` reads any datastore: the rr lab's resources loaded into a real etcd (with
``bgpd datastore load``, Calico's keys) plan to the same document as the YAML file they came
from, and a change is planned against etcd's content."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aetcd
from etcd_server import EtcdServer

ROOT = Path(__file__).resolve().parents[2]
RR_LAB = ROOT / "containerlab" / "rr" / "datastore.yaml"
CHANGE = """apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
  annotations: {bgpd.projectcalico.org/change: delete}
"""
NO_DAEMON = "/nonexistent/bird.ctl"


async def bgpd(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bgpd",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_plan_from_etcd_equals_plan_from_the_file(
    etcd_server: EtcdServer, etcd_client: aetcd.Client, tmp_path: Path
) -> None:
    etcd = f"etcd://127.0.0.1:{etcd_server.client_port}"
    code, _, err = await bgpd("datastore", "load", str(RR_LAB), "--etcd", etcd)
    assert code == 0, err
    for node in ("rr1", "node1"):
        plans = []
        for datastore in (f"file:{RR_LAB}", etcd):
            code, out, err = await bgpd("plan", "--node", node, "--datastore", datastore, "--json")
            assert code == 0, err
            plans.append(json.loads(out))
        assert plans[0] == plans[1]
        assert plans[0]["sessions"] and plans[0]["originated"]
    change_file = tmp_path / "change.yaml"
    change_file.write_text(CHANGE)
    args = ("plan", "--node", "node1", "--datastore", etcd, "--change", str(change_file))
    code, out, err = await bgpd(*args, "--control-socket", NO_DAEMON, "--json")
    assert code == 0, err
    change = json.loads(out)
    assert change["learned_routes"] == f"none: no daemon on {NO_DAEMON}"
    assert change["sessions"]["removed"] == ["Node_10_0_0_1", "Node_10_0_0_2"]  # both reflectors
    assert set(change["prefixes"]) == {"Node_10_0_0_1", "Node_10_0_0_2"}
    code, out, err = await bgpd("plan", "--node", "node1", "--datastore", "file:/nonexistent")
    assert code == 2 and err.startswith("bgpd: ") and not out
