"""The Kubernetes API test double serving bgpd processes in namespaces: it listens inside a
namespace (its socket made there) while the test drives it from its own thread, and the
kubeconfig that points the daemons at it. ``tests/io`` (the double) is on ``sys.path`` through
this suite's conftest."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml
from kube_api_server import ThreadedKubeApiServer, kubeconfig_document
from netns import Namespace, inside

API_PORT = 6443


def api_server_in(ns: Namespace, address: str, port: int = API_PORT) -> ThreadedKubeApiServer:
    """The double listening on ``address:port`` inside ``ns``."""
    with inside(ns):
        listener = socket.create_server((address, port))
    return ThreadedKubeApiServer(listener)


def write_kubeconfig(path: Path, address: str, port: int = API_PORT) -> Path:
    path.write_text(yaml.safe_dump(kubeconfig_document(f"http://{address}:{port}", "node-token")))
    return path
