"""Services and Secrets through the Kubernetes API, end to end: two ``bgpd run`` nodes whose
Kubernetes API is the test double (listening inside the hub's namespace), and a real BIRD 1.6
top-of-rack router peering with both over TCP-MD5::

    hub 10.213.78.1   BIRD 1.6, AS 65078: protocols tor_a and tor_b; the test double API server
    A   10.213.78.2   bgpd node-a, AS 64512, BGPPeer of the hub, password Secret key tor-a
    B   10.213.78.3   bgpd node-b, AS 64512, BGPPeer of the hub, password Secret key tor-b

The node-to-node mesh is off, as in Calico's top-of-rack designs: with it on, node-b would
re-advertise node-a's /32 learned over iBGP to the router (BIRD's export filter accepts any
route inside a service range, calico-bgp.md §2.12b step 6), and so does bgpd.

Each node reads its Calico resources from a file (the datastore) and Services, EndpointSlices
and the Secret through the API (``KUBECONFIG``): Kubernetes access on a non-Kubernetes
datastore. Covered: a Service with ``externalTrafficPolicy: Local`` whose endpoint moves from
node-a to node-b (BIRD sees its /32 leave node-a and arrive from node-b), its withdrawal when
the endpoint goes not-ready, and node-a's password rotated through the Secret (BIRD's tor_a
reconfigured to the new one): node-a's session resets and comes back with the new key, while
node-b's session, whose key in the same Secret did not change, never goes down.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from bgpd_driver import BgpdNode, ExternalPeer, OurNode, calico_datastore, lan
from calico_kdd import endpoint_slice, secret, service
from kube_lab import ThreadedKubeApiServer, api_server_in, write_kubeconfig
from netns import Namespace, have_root
from peer_drivers import Bird, PeerSpec, wait_for

pytestmark = pytest.mark.netns

PREFIX = "hK-"
SUBNET = "10.213.78.0/24"
OUR_AS, TOR_AS = 64512, 65078
SERVICES = "/api/v1/services"
SLICES = "/apis/discovery.k8s.io/v1/endpointslices"
SECRETS = "/api/v1/secrets"
EXTERNAL_IP = "198.51.100.7"
EXTERNAL_RANGE = "198.51.100.0/24"
SERVICE_ROUTE = f"{EXTERNAL_IP}/32"
TIMEOUT = 40.0


class TorBird(Bird):
    """BIRD 1.6 with one protocol per node (``tor_a``, ``tor_b``), both with the password."""

    def __init__(
        self, ns: Namespace, spec: PeerSpec, workdir: Path, nodes: dict[str, tuple[str, str]]
    ) -> None:
        super().__init__(ns, spec, workdir)
        self.nodes = {name: address for name, (address, _) in nodes.items()}
        self.passwords = {name: password for name, (_, password) in nodes.items()}

    def config(self) -> str:
        s = self.spec
        protocols = "".join(
            f"""
protocol bgp {name} {{
    local {s.address} as {s.local_as};
    neighbor {address} as {s.peer_as};
    hold time 9; keepalive time 3; connect retry time 2; connect delay time 1;
    error wait time 1,4;
    password "{self.passwords[name]}";
    import all;
    export none;
}}"""
            for name, address in self.nodes.items()
        )
        return f"""
router id {s.router_id};
log "{self.dir}/bird-proto.log" all;
protocol device {{ }}
{protocols}
"""

    def reconfigure(self, protocol: str, password: str) -> None:
        """A new password for one protocol: BIRD restarts only that one."""
        self.passwords[protocol] = password
        (self.dir / "bird.conf").write_text(self.config())
        self.cli("configure")

    def protocol_state(self, name: str) -> str:
        for line in self.cli("show", "protocols", name).splitlines():
            if line.startswith(name):
                return line.split()[-1]
        return "unknown"

    def routes_from(self, name: str) -> set[str]:
        out = self.cli("show", "route", "protocol", name)
        return {w[0] for w in (line.split() for line in out.splitlines()) if w and "/" in w[0]}


def datastore(me: OurNode, other: OurNode, hub_ip: str, key: str) -> str:
    text = calico_datastore(
        me,
        (ExternalPeer(hub_ip, TOR_AS),),
        others=(other,),
        bgp_config={
            "nodeToNodeMeshEnabled": False,
            "serviceExternalIPs": [{"cidr": EXTERNAL_RANGE}],
        },
    )
    resources = list(yaml.safe_load_all(text))
    for resource in resources:
        if resource["kind"] == "BGPPeer":
            ref = {"secretKeyRef": {"name": "bgp-passwords", "key": key}}
            resource["spec"]["password"] = ref
    return yaml.safe_dump_all(resources, sort_keys=False)


@dataclass
class Lab:
    api: ThreadedKubeApiServer
    bird: TorBird
    a: BgpdNode
    b: BgpdNode
    a_ip: str
    b_ip: str

    def describe(self) -> str:
        return f"A: {self.a.describe()}\nB: {self.b.describe()}\nBIRD: {self.bird.describe()}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not have_root():
        pytest.skip("needs root and iproute2")
    if not Bird.available():
        pytest.skip("BIRD 1.6 is not installed")
    workdir = tmp_path_factory.mktemp("kubernetes-services")
    spaces: list[Namespace] = []
    cleanups: list[Callable[[], None]] = []
    try:
        for _ in range(3):
            spaces.append(Namespace.create(PREFIX))
        hub, a_member, b_member = lan(spaces[0], spaces[1:], SUBNET)
        api = api_server_in(hub.ns, hub.address)
        cleanups.append(api.stop)
        api.put(SECRETS, secret("bgp-passwords", {"tor-a": "first-a", "tor-b": "first-b"}))
        api.put(SERVICES, service())
        api.put(SLICES, endpoint_slice("node-a"))
        node_a = OurNode("node-a", f"{a_member.address}/24", OUR_AS)
        node_b = OurNode("node-b", f"{b_member.address}/24", OUR_AS)
        env = {"KUBECONFIG": str(write_kubeconfig(workdir / "kubeconfig", hub.address))}
        a, b = (
            BgpdNode(
                member.ns,
                me,
                (),
                workdir / me.name,
                datastore_text=datastore(me, other, hub.address, key),
                env=env,
            )
            for member, me, other, key in (
                (a_member, node_a, node_b, "tor-a"),
                (b_member, node_b, node_a, "tor-b"),
            )
        )
        spec = PeerSpec(
            local_as=TOR_AS,
            peer_as=OUR_AS,
            router_id=hub.address,
            address=hub.address,
            neighbor=a_member.address,
        )
        nodes = {
            "tor_a": (a_member.address, "first-a"),
            "tor_b": (b_member.address, "first-b"),
        }
        bird = TorBird(hub.ns, spec, workdir, nodes)
        for daemon in (a, b):
            cleanups.append(lambda d=daemon: d.stop(signal.SIGKILL))  # type: ignore[misc]
        cleanups.append(bird.stop)
        bird.start()
        a.start()
        b.start()
        current = Lab(api, bird, a, b, a_member.address, b_member.address)
        wait_for(
            lambda: all(bird.protocol_state(n) == "Established" for n in nodes),
            TIMEOUT,
            current.describe,
        )
        yield current
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
        for ns in spaces:
            ns.delete()


def test_the_service_route_follows_its_endpoint_from_node_a_to_node_b(lab: Lab) -> None:
    bird = lab.bird
    wait_for(lambda: SERVICE_ROUTE in bird.routes_from("tor_a"), TIMEOUT, lab.describe)
    assert SERVICE_ROUTE not in bird.routes_from("tor_b")
    assert EXTERNAL_RANGE in bird.routes_from("tor_a") and EXTERNAL_RANGE in bird.routes_from(
        "tor_b"
    )

    lab.api.put(SLICES, endpoint_slice("node-b"))
    wait_for(
        lambda: (
            SERVICE_ROUTE in bird.routes_from("tor_b")
            and SERVICE_ROUTE not in bird.routes_from("tor_a")
        ),
        TIMEOUT,
        lab.describe,
    )

    lab.api.put(SLICES, endpoint_slice("node-b", ready=False))
    wait_for(lambda: SERVICE_ROUTE not in bird.routes_from("tor_b"), TIMEOUT, lab.describe)
    assert EXTERNAL_RANGE in bird.routes_from("tor_b")  # the range stays


def test_a_password_rotated_through_the_secret_resets_only_that_session(lab: Lab) -> None:
    bird, a, b = lab.bird, lab.a, lab.b
    hub = lab.bird.spec.address
    assert not a.session_down_logged(hub) and not b.session_down_logged(hub)
    bird.reconfigure("tor_a", "second-a")  # tor_a drops: the old signatures are wrong now
    lab.api.put(SECRETS, secret("bgp-passwords", {"tor-a": "second-a", "tor-b": "first-b"}))
    wait_for(lambda: a.session_down_logged(hub), TIMEOUT, lab.describe)
    wait_for(
        lambda: bird.protocol_state("tor_a") == "Established" and a.established_with(hub),
        TIMEOUT,
        lab.describe,
    )
    assert bird.protocol_state("tor_b") == "Established"
    assert not b.session_down_logged(hub)  # node-b's key did not change: its session stayed
