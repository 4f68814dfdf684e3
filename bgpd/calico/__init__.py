"""Calico's rules on top of the generic speaker: what confd's templates made BIRD do, in one
place. The map, by section of calico-bgp.md:

  §2.7-§2.8  sessions: a session as the FSM and the RIB run it      ``sessions``
  §2.8 5-6   a session's import and export policies                 ``export``
  §2.9       BGPFilters compiled into the policy engine             ``filters``
  §2.10      priority <-> LOCAL_PREF, written once                  ``priority``
  §2.11      kernel programming: pools we own, rejects, WireGuard,
             tunnel facts (the filter itself: ``bgpd.kernel.plan``) ``tunnels``
  §2.12b     ``calico_export_to_bgp_peers`` and the node facts it
             reads (own blocks, service ranges, communities)        ``advertise``
  §2.12-2.13 what the node originates, and its routes in the RIB    ``origin``
  §2        a node's whole routing plan from one snapshot          ``node``

Rules:
1. Pure: values in, values out; no IO, no clock, no logging.
2. The routing core (``bgpd.wire``, ``bgpd.session``, ``bgpd.rib``, ``bgpd.speaker``,
   ``bgpd.router``) never imports this package or ``peers`` (``tests/test_layers.py``): Calico's
   rules reach it only as values of its own types (policies, settings, routes).
3. Each rule is written once, in the module the map names, citing its section.
"""
