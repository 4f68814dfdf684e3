"""Calico datastore adapters and the typed snapshot they feed.

Rules:
1. ``schema`` and ``cache`` are pure; ``etcd`` and ``file`` are the IO edges.
2. Every adapter produces the same ``peers.model.Snapshot``.
"""
