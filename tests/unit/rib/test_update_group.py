"""Update groups (``bgpd.rib.update_group``, speaker rule 7): a reflector's clients share one
Adj-RIB-Out, and every client still ends up holding exactly what its own Adj-RIB-Out would
have sent it. The oracle is the per-peer export (``Speaker._export``: the export rules and
policy for that one session, the sender rule included); the messages are the real encoded
UPDATEs, decoded as the client would."""

from __future__ import annotations

import ipaddress
import random

import pytest

from bgpd.rib import update_group
from bgpd.rib.policy import Policy, PolicyContext
from bgpd.speaker import PeerHasOutput, PeerSettings, Speaker, SpeakerConfig
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.codec import decode_message
from bgpd.wire.constants import MessageType
from bgpd.wire.framer import Framer
from bgpd.wire.messages import Announcement, RouteRefresh, Update, Withdrawal
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, PathAttributes, Prefix, prefix_from_str

ASN = 64512
RR_ID = int(ipaddress.IPv4Address("10.0.0.254"))


class Client:
    """One reflector client: what it sent, and what it holds from the reflector."""

    def __init__(self, index: int) -> None:
        self.name = f"client{index}"
        self.address = ipaddress.IPv4Address(f"10.0.0.{index}")
        self.negotiated = Negotiated(
            families=frozenset({IPV4_UNICAST}),
            local_as=ASN,
            peer_as=ASN,
            peer_id=int(self.address),
            route_refresh=True,
        )
        self.held: dict[Prefix, PathAttributes] = {}
        self.eor = 0

    def settings(self) -> PeerSettings:
        return PeerSettings(address=self.address, peer_as=ASN, rr_client=True)

    def receive(self, messages: list[bytes]) -> None:
        framer = Framer(max_length=4096)
        for kind, body in framer.feed(b"".join(messages)):
            if kind != MessageType.UPDATE:
                continue
            update = decode_message(kind, body, self.negotiated, AttributeCache())
            assert isinstance(update, Update)
            if update.end_of_rib is not None:
                self.eor += 1
            for withdrawal in update.withdrawn:
                for prefix in withdrawal.prefixes:
                    self.held.pop(prefix, None)
            for announcement in update.announced:
                for prefix in announcement.prefixes:
                    self.held[prefix] = announcement.attributes

    def attrs(self, med: int) -> PathAttributes:
        return PathAttributes(origin=0, next_hop=self.address.packed, local_pref=100, med=med)


def _expected(speaker: Speaker, client: Client) -> dict[Prefix, PathAttributes]:
    """The oracle: the client's own export of every best route."""
    peer = speaker._peers[client.name]
    loc = speaker.loc_rib(IPV4_UNICAST)
    out: dict[Prefix, PathAttributes] = {}
    for prefix in loc.prefixes():
        best = loc.best(prefix)
        assert best is not None
        attrs = speaker._export(peer, IPV4_UNICAST, prefix, best)
        if attrs is not None:
            out[prefix] = attrs
    return out


def _no_shared(
    family: object, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
) -> PathAttributes | None:
    """An export policy that keeps the shared prefixes to itself."""
    return None if prefix in SHARED else attrs


def _pump(
    speaker: Speaker,
    clients: dict[str, Client],
    rng: random.Random,
    now: float,
    stalled: frozenset[str] = frozenset(),
) -> None:
    """Take from every client with output, in random order and budgets, until quiet (the
    ``stalled`` ones never read)."""
    for _ in range(10_000):
        waiting = [
            o.peer_id
            for o in speaker.drain()
            if isinstance(o, PeerHasOutput) and o.peer_id not in stalled
        ]
        if not waiting:
            return
        rng.shuffle(waiting)
        for name in waiting:
            clients[name].receive(speaker.take(name, rng.choice([1, 3, 50, None])))
        speaker.timer(now)
    raise AssertionError("did not settle")


def _prefixes(client: int, count: int) -> list[Prefix]:
    return [prefix_from_str(f"10.{client}.{i}.0/26") for i in range(count)]


SHARED = frozenset(_prefixes(99, 6))  # announced by several clients: the best moves
POLICIES = (Policy(), Policy(hook=_no_shared))


def _announce(speaker: Speaker, client: Client, prefixes: list[Prefix], med: int, now: float):
    update = Update(announced=(Announcement(IPV4_UNICAST, client.attrs(med), prefixes),))
    speaker.update_received(client.name, update, now)


@pytest.mark.parametrize("seed", range(40))
def test_every_client_holds_exactly_its_own_export(seed: int) -> None:
    """Clients join at random times, announce, re-announce with other attributes (so a shared
    prefix's best moves between clients), withdraw, go down and come back, ask for a refresh,
    and stall past the lag limit; whatever the order and budget of the takes, each client
    ends up holding its own export, never its own routes."""
    rng = random.Random(seed)
    speaker = Speaker(SpeakerConfig(router_id=RR_ID, local_as=ASN))
    clients = {c.name: c for c in (Client(i) for i in range(1, 7))}
    shared = sorted(SHARED)
    local = PathAttributes(origin=0, next_hop=b"", local_pref=100)
    speaker.set_local_routes({IPV4_UNICAST: {prefix_from_str("10.250.0.0/26"): local}}, 0.0)
    now = 0.0
    up: set[str] = set()
    for step in range(30):
        now += 0.5
        name = rng.choice(sorted(clients))
        client = clients[name]
        action = rng.random()
        if name not in up or action < 0.1:
            if name in up:
                speaker.peer_down(name, graceful=False, now=now)
            client.held.clear()
            speaker.peer_up(name, client.settings(), client.negotiated, now)
            if rng.random() < 0.5:  # before it took anything, as the router does at once
                speaker.set_policy(name, Policy(), rng.choice(POLICIES), now)
            up.add(name)
        elif action < 0.6:
            own = _prefixes(int(client.address) & 0xFF, rng.randint(1, 8))
            picked = rng.sample(shared, rng.randint(0, 3))
            _announce(speaker, client, own + picked, rng.randint(0, 3), now)
        elif action < 0.8:
            gone = rng.sample(shared, 2) + _prefixes(int(client.address) & 0xFF, 2)
            withdrawal = Update(withdrawn=(Withdrawal(IPV4_UNICAST, gone),))
            speaker.update_received(name, withdrawal, now)
        elif action < 0.85:  # a new export policy: the client moves to another group
            speaker.set_policy(name, Policy(), rng.choice(POLICIES), now)
        elif action < 0.9:
            client.held.clear()  # RFC 2918 §4: the peer asked for everything again
            speaker.route_refresh_received(name, RouteRefresh(IPV4_UNICAST, 0), now)
        else:  # a slow reader: it takes nothing until the others have split it off
            stalled = frozenset({name})
            for other in rng.sample(sorted(up - stalled), min(2, len(up) - 1)):
                sender = clients[other]
                picked = rng.sample(shared, 2)
                _announce(speaker, sender, picked, rng.randint(0, 3), now)
                _pump(speaker, clients, rng, now, stalled)
            now += update_group.LAG_LIMIT + 1
            speaker.timer(now)
        _pump(speaker, clients, rng, now)
        if step % 5 == 4:
            for other in up:
                assert clients[other].held == _expected(speaker, clients[other]), other
    now += update_group.LAG_LIMIT + 1
    speaker.timer(now)
    _pump(speaker, clients, rng, now)
    for name in up:
        client = clients[name]
        expected = _expected(speaker, client)
        assert client.held == expected, name
        assert client.eor >= 1
        own = set(_prefixes(int(client.address) & 0xFF, 8))
        assert not own & set(client.held), "never back to the sender"
        assert speaker.route_counts(name)[1] == len(expected)
        assert speaker.advertised(name, IPV4_UNICAST) == expected


def test_clients_share_one_group_and_one_encoding() -> None:
    """A hundred clients with one policy: one group, and every client is handed the same
    UPDATE objects for the routes none of them sent."""
    speaker = Speaker(SpeakerConfig(router_id=RR_ID, local_as=ASN))
    clients = [Client(i) for i in range(1, 101)]
    for client in clients:
        speaker.peer_up(client.name, client.settings(), client.negotiated, 0.0)
    _announce(speaker, clients[0], _prefixes(1, 50), 0, 0.0)
    speaker.drain()
    handed = [speaker.take(c.name) for c in clients[1:]]
    assert speaker.update_groups() == [(IPV4_UNICAST, 100)]
    first = [m for m in handed[0] if len(m) > 23]  # UPDATEs with routes (not End-of-RIB)
    assert first
    for messages in handed[1:]:
        routes = [m for m in messages if len(m) > 23]
        assert len(routes) == len(first)
        assert all(a is b for a, b in zip(routes, first, strict=True))
    assert all(len(m) <= 23 for m in speaker.take(clients[0].name))  # its own: End-of-RIB only


def test_a_stalled_client_is_split_off_and_merges_back_when_it_reads() -> None:
    """Update-group rule 5: the others are not held back past the lag limit, and the slow one
    rejoins once it caught up."""
    rng = random.Random(1)
    speaker = Speaker(SpeakerConfig(router_id=RR_ID, local_as=ASN))
    clients = {c.name: c for c in (Client(i) for i in range(1, 5))}
    for client in clients.values():
        speaker.peer_up(client.name, client.settings(), client.negotiated, 0.0)
    _pump(speaker, clients, rng, 0.0)
    slow = "client4"
    _announce(speaker, clients["client1"], _prefixes(1, 10), 0, 1.0)
    _pump(speaker, clients, rng, 1.0, frozenset({slow}))
    _announce(speaker, clients["client2"], _prefixes(2, 10), 0, 1.5)
    _pump(speaker, clients, rng, 1.5, frozenset({slow}))
    assert not set(_prefixes(2, 10)) & set(clients["client3"].held)  # held back by the slow one
    speaker.timer(1.0 + update_group.LAG_LIMIT)
    assert sorted(n for _, n in speaker.update_groups()) == [1, 3]
    _pump(speaker, clients, rng, 5.0, frozenset({slow}))
    assert set(_prefixes(2, 10)) <= set(clients["client3"].held)  # the others went on
    _pump(speaker, clients, rng, 5.0)
    assert speaker.update_groups() == [(IPV4_UNICAST, 4)]  # merged back
    for client in clients.values():
        assert client.held == _expected(speaker, client)
