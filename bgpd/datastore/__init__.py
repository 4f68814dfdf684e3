"""Calico datastore adapters and the typed snapshot they feed.

Rules:
1. ``schema``, ``cache``, ``kdd`` and the settings are pure; ``etcd``, ``kubernetes`` and ``file``
   are the IO edges.
2. Every adapter produces the same ``peers.model.Snapshot``.
3. ``DEFAULT_DATASTORE`` is the embedded default (three nodes, full mesh: the demo's lab).
"""

from pathlib import Path

DEFAULT_DATASTORE = Path(__file__).with_name("default.yaml")
