"""A test double of the Kubernetes API server: asyncio HTTP/1.1 on loopback, plain HTTP.

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
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from dataclasses import dataclass, field
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


@dataclass
class _Watch:
    collection: str
    queue: asyncio.Queue[dict[str, Any] | None]
    bookmarks: bool


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
    port: int = 0
    _server: asyncio.Server | None = None
    _watches: list[_Watch] = field(default_factory=list)

    # -- control -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop_watches()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def put(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object in ``collection`` (a list path, e.g. /api/v1/nodes)."""
        obj = copy.deepcopy(obj)
        name = obj["metadata"]["name"]
        table = self.objects.setdefault(collection, {})
        kind = "MODIFIED" if name in table else "ADDED"
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        table[name] = obj
        self._record(collection, kind, obj)
        return obj

    def delete(self, collection: str, name: str) -> None:
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
            if watch.collection == collection:
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
            if query.get("watch") in ("true", "1"):
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

    def _collection(self, path: str) -> str | None:
        if path == "/api/v1/nodes":
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
                for g in self.groups
            ]
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if path == "/api/v1":
            return 200, _resource_list("v1", {"nodes": "Node"})
        for group in self.groups:
            if path == f"/apis/{group}":
                return 200, _resource_list(group, CALICO_PLURALS)
        collection = self._collection(path)
        if collection is not None:
            return self._list(collection, query)
        collection, _, name = path.rpartition("/")
        obj = self.objects.get(collection, {}).get(name)
        if self._collection(collection) is None or obj is None:
            return 404, _status(404, "NotFound", f"{path} not found")
        return 200, obj

    def _write(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """POST to a collection creates; PUT to an object replaces; DELETE deletes."""
        collection, _, name = path.rpartition("/")
        if method == "POST" and self._collection(path) is not None:
            obj = json.loads(body)
            if obj["metadata"]["name"] in self.objects.get(path, {}):
                return 409, _status(409, "AlreadyExists", f"{path} exists")
            return 201, self.put(path, obj)
        if self._collection(collection) is None:
            return 404, _status(404, "NotFound", f"{path} not found")
        if method == "PUT":
            return 200, self.put(collection, json.loads(body))
        if method == "DELETE" and name in self.objects.get(collection, {}):
            obj = self.objects[collection][name]
            self.delete(collection, name)
            return 200, obj
        return 404, _status(404, "NotFound", f"{path} not found")

    def _list(self, collection: str, query: dict[str, str]) -> tuple[int, Any]:
        limit = int(query.get("limit", "0") or 0)
        start, version = "", self.version
        if query.get("continue"):
            token = json.loads(base64.b64decode(query["continue"]))
            start, version = token["start"], token["rv"]
            if version < self.compacted:
                return 410, _status(410, "Expired", "the provided continue parameter is too old")
        names = sorted(n for n in self.objects.get(collection, {}) if n > start)
        page = names[:limit] if limit else names
        meta: dict[str, Any] = {"resourceVersion": str(version)}
        if len(page) < len(names):
            token = {"start": page[-1], "rv": version}
            meta["continue"] = base64.b64encode(json.dumps(token).encode()).decode()
        items = [self.objects[collection][n] for n in page]
        return 200, {"kind": "List", "apiVersion": "v1", "metadata": meta, "items": items}

    async def _watch(self, writer: asyncio.StreamWriter, path: str, query: dict[str, str]) -> None:
        collection = self._collection(path)
        if collection is None:
            await self._reply(writer, 404, _status(404, "NotFound", path))
            return
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode())
        since = int(query.get("resourceVersion") or self.version)
        watch = _Watch(collection, asyncio.Queue(), query.get("allowWatchBookmarks") == "true")
        if since < self.compacted:
            gone = _status(410, "Expired", f"too old resource version: {since}")
            watch.queue.put_nowait({"type": "ERROR", "object": gone})
            watch.queue.put_nowait(None)
        else:
            for version, where, kind, obj in self.history:
                if where == collection and version > since:
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


def _resource_list(group_version: str, plurals: dict[str, str]) -> dict[str, Any]:
    verbs = ["get", "list", "watch", "create", "update", "delete"]
    resources = [
        {"name": plural, "singularName": "", "namespaced": False, "kind": kind, "verbs": verbs}
        for plural, kind in plurals.items()
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
