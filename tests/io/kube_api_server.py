"""A test double of the Kubernetes API server: asyncio HTTP/1.1 on loopback, plain HTTP or TLS.

Rules (the real server's semantics that bgpd relies on):
1. One global resourceVersion counter, raised by every write; each object carries the version of
   its last write; a list carries the version it was read at.
2. Lists page with ``limit`` and an opaque ``continue`` token; a token whose version has been
   compacted away is answered 410 Gone, as an expired continue token is.
3. ``watch=true`` replays the history after ``resourceVersion`` and then streams live events,
   one JSON object per line of a chunked body; ``bookmark()`` sends BOOKMARK events to watches
   that asked for them. A version older than the compaction point is answered, as the real
   server does, with an ERROR event carrying a Status of code 410, then the end of the stream.
4. ``/api``, ``/apis`` and the group version documents are served for discovery; ``groups``
   chooses which Calico groups exist. Objects are read (GET), created (POST to the collection),
   replaced (PUT) and deleted (DELETE) as kubectl does; there is no OpenAPI document.
5. Tests drive it directly (``put``, ``delete``, ``compact``, ``drop_watches``, ``stop``/``start``
   on the same port) and can read ``requests`` (method and target of every request) and
   ``authorizations`` (the Authorization header of each).
6. Namespaced resources (core/v1 Services and Secrets, discovery.k8s.io/v1 EndpointSlices) are
   served across all namespaces (``/api/v1/services``) and per namespace
   (``/api/v1/namespaces/NS/services[/NAME]``); lists and watches honour the field selector
   ``metadata.name=NAME``. A Secret written with ``stringData`` is stored as base64 ``data``.
7. Authentication and authorization: with ``tokens`` set, a request without one of those bearer
   tokens is answered 401 Unauthorized; ``forbidden`` names resources (``secrets``) or single
   objects (``secrets/NAME``, in any namespace) every request is refused with 403 Forbidden,
   as RBAC without the verb answers (a list narrowed to a name by field selector is checked
   against that name, as ``resourceNames`` rules are). Both are Status objects.
8. A Service written over HTTP gets the server's defaults and keeps its server-side status
   (``_service_defaults``); ``put`` from a test writes what it is given (a controller's status).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

CALICO_PLURALS = {
    "bgpconfigurations": "BGPConfiguration",
    "bgppeers": "BGPPeer",
    "bgpfilters": "BGPFilter",
    "bfdconfigurations": "BFDConfiguration",
    "ippools": "IPPool",
    "blockaffinities": "BlockAffinity",
    "ipamblocks": "IPAMBlock",
    "ipamconfigs": "IPAMConfig",
    "ipamconfigurations": "IPAMConfiguration",
}


GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool, as the server parses
# cluster-wide collection path -> (plural, kind, group version) of the namespaced resources
NAMESPACED = {
    "/api/v1/services": ("services", "Service", "v1"),
    "/api/v1/secrets": ("secrets", "Secret", "v1"),
    "/apis/discovery.k8s.io/v1/endpointslices": (
        "endpointslices",
        "EndpointSlice",
        "discovery.k8s.io/v1",
    ),
}


@dataclass(frozen=True)
class _Target:
    """A request path: the collection (cluster-wide path), a namespace, an object name."""

    collection: str
    namespace: str = ""
    name: str = ""

    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass
class _Watch:
    collection: str
    queue: asyncio.Queue[dict[str, Any] | None]
    bookmarks: bool
    namespace: str = ""
    name: str = ""

    def sees(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return (not self.namespace or meta.get("namespace") == self.namespace) and (
            not self.name or meta.get("name") == self.name
        )


@dataclass
class KubeApiServer:
    groups: tuple[str, ...] = ("crd.projectcalico.org/v1",)
    absent: frozenset[str] = frozenset()  # plurals not served (an older Calico's CRDs)
    version: int = 1
    compacted: int = 0
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    history: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    tokens: frozenset[str] | None = None  # rule 7: None accepts every request
    tls: ssl.SSLContext | None = None  # HTTPS (kubectl sends a bearer token only over TLS)
    forbidden: set[str] = field(default_factory=set)  # rule 7: "secrets", "secrets/NAME"
    port: int = 0
    _server: asyncio.Server | None = None
    _watches: list[_Watch] = field(default_factory=list)

    # -- control -------------------------------------------------------------------------------

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on loopback, or on ``sock`` (a listening socket made in a test's namespace)."""
        if sock is not None:
            self._server = await asyncio.start_server(self._serve, sock=sock, ssl=self.tls)
        else:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, ssl=self.tls
            )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop_watches()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def put(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object in ``collection`` (a list path, e.g. /api/v1/nodes; for a
        namespaced resource the cluster-wide one, /api/v1/services, and ``metadata.namespace``
        says where)."""
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        name = f"{meta['namespace']}/{meta['name']}" if collection in NAMESPACED else meta["name"]
        if collection == "/api/v1/secrets" and "stringData" in obj:
            data = obj.setdefault("data", {})
            for key, text in obj.pop("stringData").items():
                data[key] = base64.b64encode(text.encode()).decode()
        table = self.objects.setdefault(collection, {})
        kind = "MODIFIED" if name in table else "ADDED"
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        table[name] = obj
        self._record(collection, kind, obj)
        return obj

    def delete(self, collection: str, name: str) -> None:
        """Delete ``name`` (``namespace/name`` for a namespaced resource)."""
        obj = self.objects.get(collection, {}).pop(name)
        self.version += 1
        obj = dict(obj, metadata=dict(obj["metadata"], resourceVersion=str(self.version)))
        self._record(collection, "DELETED", obj)

    def compact(self) -> None:
        """Forget all history: every older resourceVersion is now too old (410)."""
        self.compacted = self.version
        self.history.clear()

    def drop_watches(self) -> None:
        for watch in self._watches:
            watch.queue.put_nowait(None)
        self._watches.clear()

    def bookmark(self) -> None:
        for watch in self._watches:
            if watch.bookmarks:
                meta = {"resourceVersion": str(self.version)}
                watch.queue.put_nowait({"type": "BOOKMARK", "object": {"metadata": meta}})

    def watch_count(self) -> int:
        return len(self._watches)

    def _record(self, collection: str, kind: str, obj: dict[str, Any]) -> None:
        self.history.append((self.version, collection, kind, copy.deepcopy(obj)))
        for watch in self._watches:
            if watch.collection == collection and watch.sees(obj):
                watch.queue.put_nowait({"type": kind, "object": copy.deepcopy(obj)})

    # -- HTTP ----------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readline()
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = b""
            if int(headers.get("content-length", "0")):
                body = await reader.readexactly(int(headers["content-length"]))
            method, target, _ = request.decode().split(" ", 2)
            self.requests.append((method, target))
            self.authorizations.append(headers.get("authorization", ""))
            parts = urlsplit(target)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            refusal = self._refusal(headers.get("authorization", ""), parts.path, query)
            if refusal is not None:
                await self._reply(writer, refusal["code"], refusal)
            elif query.get("watch") in GO_TRUE:
                await self._watch(writer, parts.path, query)
            elif method == "GET":
                await self._reply(writer, *self._get(parts.path, query))
            else:
                await self._reply(writer, *self._write(method, parts.path, body))
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        reason = "OK" if status < 300 else "Error"
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()

    def _refusal(self, authorization: str, path: str, query: dict[str, str]) -> Any:
        """Rule 7: the Status of a refused request, or None."""
        if self.tokens is not None:
            token = authorization.removeprefix("Bearer ").strip()
            if not authorization.startswith("Bearer ") or token not in self.tokens:
                return _status(401, "Unauthorized", "Unauthorized")
        target = self._target(path)
        if target is None or not self.forbidden:
            return None
        plural = target.collection.rsplit("/", 1)[1]
        name = target.name or query.get("fieldSelector", "").removeprefix("metadata.name=")
        if plural in self.forbidden or f"{plural}/{name}" in self.forbidden:
            where = f' in the namespace "{target.namespace}"' if target.namespace else ""
            message = (
                f'{plural} "{name}" is forbidden: User "system:serviceaccount:kube-system:'
                f'calico-node" cannot list resource "{plural}"{where}'
            )
            return _status(403, "Forbidden", message)
        return None

    def _target(self, path: str) -> _Target | None:
        """Rule 6: a path as collection, namespace and name (None: not a resource path)."""
        parts = path.strip("/").split("/")
        prefix_length = 2 if parts[:1] == ["api"] else 3
        prefix = "/" + "/".join(parts[:prefix_length])
        rest = parts[prefix_length:]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2:
            return None
        collection = f"{prefix}/{rest[0]}"
        name = rest[1] if len(rest) == 2 else ""
        if collection in NAMESPACED:
            return _Target(collection, namespace, name)
        if namespace or self._collection(collection) is None:
            return None
        return _Target(collection, "", name)

    def _collection(self, path: str) -> str | None:
        if path == "/api/v1/nodes" or path in NAMESPACED:
            return path
        for group in self.groups:
            prefix = f"/apis/{group}/"
            plural = path[len(prefix) :]
            if path.startswith(prefix) and plural in CALICO_PLURALS and plural not in self.absent:
                return path
        return None

    def _get(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/version":
            return 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-bgpd-double"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            groups = [
                {
                    "name": g.split("/")[0],
                    "versions": [{"groupVersion": g, "version": g.split("/")[1]}],
                    "preferredVersion": {"groupVersion": g, "version": g.split("/")[1]},
                }
                for g in (*self.groups, "discovery.k8s.io/v1")
            ]
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if path == "/api/v1":
            return 200, _resource_list(
                "v1", {"nodes": "Node"}, {"services": "Service", "secrets": "Secret"}
            )
        if path == "/apis/discovery.k8s.io/v1":
            return 200, _resource_list(
                "discovery.k8s.io/v1", {}, {"endpointslices": "EndpointSlice"}
            )
        for group in self.groups:
            if path == f"/apis/{group}":
                return 200, _resource_list(group, CALICO_PLURALS)
        target = self._target(path)
        if target is not None and not target.name:
            return self._list(target, query)
        obj = None if target is None else self.objects.get(target.collection, {}).get(target.key())
        if obj is None:
            return 404, _status(404, "NotFound", f"{path} not found")
        return 200, obj

    def _write(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """POST to a collection creates; PUT to an object replaces; DELETE deletes."""
        target = self._target(path)
        if target is None:
            return 404, _status(404, "NotFound", f"{path} not found")
        table = self.objects.get(target.collection, {})
        if method == "POST" and not target.name:
            obj = json.loads(body)
            if target.namespace:
                obj["metadata"]["namespace"] = target.namespace
            if target.collection == "/api/v1/services":
                obj = _service_defaults(obj, None)
            key = _Target(target.collection, target.namespace, obj["metadata"]["name"]).key()
            if key in table:
                return 409, _status(409, "AlreadyExists", f"{path} exists")
            return 201, self.put(target.collection, obj)
        if method == "PUT" and target.name:
            obj = json.loads(body)
            if target.namespace:
                obj["metadata"]["namespace"] = target.namespace
            if target.collection == "/api/v1/services":
                obj = _service_defaults(obj, table.get(target.key()))
            return 200, self.put(target.collection, obj)
        if method == "DELETE" and target.key() in table:
            obj = table[target.key()]
            self.delete(target.collection, target.key())
            return 200, obj
        return 404, _status(404, "NotFound", f"{path} not found")

    def _list(self, target: _Target, query: dict[str, str]) -> tuple[int, Any]:
        limit = int(query.get("limit", "0") or 0)
        start, version = "", self.version
        if query.get("continue"):
            token = json.loads(base64.b64decode(query["continue"]))
            start, version = token["start"], token["rv"]
            if version < self.compacted:
                return 410, _status(410, "Expired", "the provided continue parameter is too old")
        selected = _Watch(
            target.collection, asyncio.Queue(), False, target.namespace, _field_name(query)
        )
        table = self.objects.get(target.collection, {})
        names = sorted(n for n, obj in table.items() if n > start and selected.sees(obj))
        page = names[:limit] if limit else names
        meta: dict[str, Any] = {"resourceVersion": str(version)}
        if len(page) < len(names):
            token = {"start": page[-1], "rv": version}
            meta["continue"] = base64.b64encode(json.dumps(token).encode()).decode()
        items = [table[n] for n in page]
        return 200, {"kind": "List", "apiVersion": "v1", "metadata": meta, "items": items}

    async def _watch(self, writer: asyncio.StreamWriter, path: str, query: dict[str, str]) -> None:
        target = self._target(path)
        if target is None or target.name:
            await self._reply(writer, 404, _status(404, "NotFound", path))
            return
        collection = target.collection
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode())
        since = int(query.get("resourceVersion") or self.version)
        watch = _Watch(
            collection,
            asyncio.Queue(),
            query.get("allowWatchBookmarks") in GO_TRUE,
            target.namespace,
            _field_name(query),
        )
        if since < self.compacted:
            gone = _status(410, "Expired", f"too old resource version: {since}")
            watch.queue.put_nowait({"type": "ERROR", "object": gone})
            watch.queue.put_nowait(None)
        else:
            for version, where, kind, obj in self.history:
                if where == collection and version > since and watch.sees(obj):
                    watch.queue.put_nowait({"type": kind, "object": copy.deepcopy(obj)})
            self._watches.append(watch)
        try:
            while (event := await watch.queue.get()) is not None:
                line = json.dumps(event).encode() + b"\n"
                writer.write(b"%x\r\n%s\r\n" % (len(line), line))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            if watch in self._watches:
                self._watches.remove(watch)


def _service_defaults(obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """Rule 8: what the API server does to a Service written by a client: ``status`` is the
    status subresource's (kept from ``old``, never taken from the client), and the spec gets
    its defaults: ``type`` ClusterIP, ``clusterIPs`` from ``clusterIP``, ``ipFamilies`` from
    them, ``externalTrafficPolicy`` Cluster for NodePort and LoadBalancer."""
    obj = copy.deepcopy(obj)
    obj["status"] = copy.deepcopy((old or {}).get("status", {"loadBalancer": {}}))
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    cluster_ip = spec.get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        spec.setdefault("clusterIPs", [cluster_ip])
        families = ["IPv6" if ":" in ip else "IPv4" for ip in spec["clusterIPs"]]
        spec.setdefault("ipFamilies", families)
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    return obj


def _field_name(query: dict[str, str]) -> str:
    """The name a ``metadata.name=NAME`` field selector asks for, or ``""`` (rule 6)."""
    selector = query.get("fieldSelector", "")
    return selector.removeprefix("metadata.name=") if selector.startswith("metadata.name=") else ""


def _resource_list(
    group_version: str, plurals: dict[str, str], namespaced: dict[str, str] | None = None
) -> dict[str, Any]:
    verbs = ["get", "list", "watch", "create", "update", "delete"]
    resources = [
        {"name": plural, "singularName": "", "namespaced": scoped, "kind": kind, "verbs": verbs}
        for scoped, table in ((False, plurals), (True, namespaced or {}))
        for plural, kind in table.items()
    ]
    return {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def kubeconfig_document(url: str, token: str, ca: Path | None = None) -> dict[str, Any]:
    """A kubeconfig naming the double at ``url`` with a bearer ``token`` (and a CA file)."""
    cluster: dict[str, Any] = {"server": url}
    if ca is not None:
        cluster["certificate-authority"] = str(ca)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "double",
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "bgpd"}}],
        "clusters": [{"name": "double", "cluster": cluster}],
        "users": [{"name": "bgpd", "user": {"token": token}}],
    }


class ThreadedKubeApiServer:
    """The double on its own event loop in a thread, for synchronous tests and benchmarks
    whose clients are other processes: it listens on ``sock`` (made in their namespace), and
    ``put``/``delete`` run on its loop."""

    def __init__(self, sock: socket.socket, **options: Any) -> None:
        self.server = KubeApiServer(**options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self.server.start(sock))

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def put(self, collection: str, obj: dict[str, Any]) -> None:
        async def put() -> None:
            self.server.put(collection, obj)

        self._call(put())

    def delete(self, collection: str, name: str) -> None:
        async def delete() -> None:
            self.server.delete(collection, name)

        self._call(delete())

    def stop(self) -> None:
        self._call(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
