"""bgpd: BGP route distribution for Kubernetes nodes, a drop-in for Calico's BIRD + confd.

Layers (enforced by tests/test_layers.py):

* ``bgpd.wire``, ``bgpd.session``, ``bgpd.rib``, ``bgpd.calico``, ``bgpd.datastore.schema``,
  ``bgpd.kernel.plan``, ``peers``, ``encap`` (decisions): the sans-IO core. Bytes, events and
  ``now`` in, values and actions out; no asyncio, sockets, netlink, etcd or clocks.
* ``bgpd.net``, ``bgpd.datastore.etcd``/``kubernetes``/``file``, ``bgpd.kernel.netlink``,
  ``encap.devices``, ``bgpd.control``, ``bgpd.daemon``: the asyncio shell that moves values
  between them.
"""

__version__ = "0.1.0"
