"""Who this node peers with, computed exactly as Calico's confd computes it.

Rules:
1. Pure: values in (a datastore ``Snapshot``), values out (``SessionSpec`` sets and diffs).
2. Never imports ``bgpd``: the daemon depends on ``peers``, not the other way round.
"""
