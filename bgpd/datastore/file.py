"""The YAML file datastore: a multi-document file of Calico v3 resources, watched for changes.

Rules:
1. The file holds the resources as Calico's API writes them (``bgpd.datastore.schema`` rule 3);
   ``kind: List`` (or ``<Kind>List``) documents are flattened through their ``items``.
2. A bad document is logged with its index, kind, name and reason, counted, and skipped; the
   rest of the file still applies. A file that is not valid YAML at all changes nothing: the
   previous snapshot stays (and the error is counted).
3. Changes are found by polling the file's identity (inode, size, mtime) every
   ``poll_interval`` seconds, which also catches an atomic rename over the file; a snapshot is
   yielded only when the decoded content differs from the last one.
4. Every load is complete, so the snapshot is in sync from the first successful load.
5. Plain scalars resolve as Calico's decoding (sigs.k8s.io/yaml over go-yaml v2, used by
   calicoctl and confd's tests) resolves them where it matters for a string field: the boolean
   words of go-yaml v2 (``y``/``yes``/``on``/``true`` and ``n``/``no``/``off``/``false``, in the
   lower, capitalised and upper forms) are booleans, which a string field reads as
   ``"true"``/``"false"`` (projectcalico/calico 87c15906 confd case ``reverse_peering/auto``: a
   node labelled ``route-reflector: yes`` is matched by ``route-reflector == 'true'``);
   ``null``/``~``/empty are null and decimal integers without a leading zero integers;
   everything else is a string (sexagesimal ``5663:12``, which go-yaml v2 does not resolve,
   octal-looking ``0755``, ``1_000``, and asdot ``1.10``), so a community ``5663:12`` reads as
   written. The schema turns an integer or boolean met in a string field into its text
   (``schema`` rule 7).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import yaml

from bgpd.datastore.cache import Cache, RejectedRecord
from bgpd.datastore.schema import Record, RecordError, RecordKey, decode_document
from peers.model import Snapshot

DEFAULT_POLL_INTERVAL = 2.0

log = structlog.get_logger(__name__)

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CalicoLoader(_BaseLoader):  # type: ignore[misc]
    """A safe loader resolving plain scalars as rule 5 says."""


_BOOL_WORDS = "y|Y|yes|Yes|YES|on|On|ON|true|True|TRUE|n|N|no|No|NO|off|Off|OFF|false|False|FALSE"
_CalicoLoader.bool_values = {
    **_BaseLoader.bool_values,
    **{w.lower(): w.lower() in ("y", "yes", "on", "true") for w in _BOOL_WORDS.split("|")},
}
_CalicoLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", rf"^(?:{_BOOL_WORDS})$", list("yYoOtTnNfF")),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9]*)$", list("-+0123456789")),
):
    _CalicoLoader.add_implicit_resolver(_tag, re.compile(_pattern), _first)

_Loader: Any = _CalicoLoader


@dataclass(frozen=True, slots=True)
class ParsedFile:
    records: tuple[tuple[RecordKey, Record], ...]
    errors: tuple[RecordError, ...]


def parse_documents(text: str, source: str) -> list[tuple[str, object]]:
    """(where, document) for every resource document, Lists flattened (rule 1)."""
    found: list[tuple[str, object]] = []
    for index, doc in enumerate(yaml.load_all(text, Loader=_Loader)):
        if doc is None:
            continue
        where = f"{source}: document {index}"
        kind = doc.get("kind", "") if isinstance(doc, dict) else ""
        if isinstance(kind, str) and kind.endswith("List") and isinstance(doc, dict):
            for position, item in enumerate(doc.get("items") or []):
                found.append((f"{where} item {position}", item))
        else:
            found.append((where, doc))
    return found


def parse_text(text: str, source: str = "<yaml>") -> ParsedFile:
    """Decode a whole file's text; ``yaml.YAMLError`` propagates for unreadable YAML."""
    records: list[tuple[RecordKey, Record]] = []
    errors: list[RecordError] = []
    for where, doc in parse_documents(text, source):
        try:
            records.append(decode_document(doc, where))
        except RecordError as exc:
            errors.append(exc)
    return ParsedFile(tuple(records), tuple(errors))


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class FileDatastore:
    """Snapshots from one YAML file (module rules 1-4)."""

    def __init__(self, path: Path | str, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self.cache = Cache()
        self.loads = 0
        self._identity: tuple[int, int, int] | None = None
        self._content: tuple[tuple[RecordKey, Record], ...] | None = None

    @property
    def rejected(self) -> int:
        return self.cache.rejected

    @property
    def last_errors(self) -> tuple[RejectedRecord, ...]:
        return tuple(self.cache.last_errors)

    def _reject(self, key: str, reason: str) -> None:
        self.cache.rejected += 1
        self.cache.last_errors.append(RejectedRecord(key, reason, self.loads))
        log.warning("datastore.file.rejected", where=key, reason=reason)

    def reload(self) -> Snapshot | None:
        """Read the file now; the new snapshot if its content changed, else None."""
        self._identity = _identity(self.path)
        try:
            text = self.path.read_text()
            parsed = parse_text(text, str(self.path))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            self._reject(str(self.path), f"unreadable: {exc}")
            return None
        for error in parsed.errors:
            self._reject(error.key, error.reason)
        if self._content == parsed.records:
            return None
        self._content = parsed.records
        self.loads += 1
        snapshot = self.cache.replace(parsed.records, revision=self.loads)
        log.info(
            "datastore.file.loaded",
            path=str(self.path),
            records=len(parsed.records),
            rejected=len(parsed.errors),
            revision=self.loads,
        )
        return snapshot

    def changed_on_disk(self) -> bool:
        return _identity(self.path) != self._identity

    async def watch(self) -> AsyncGenerator[Snapshot, None]:
        """The first snapshot as soon as the file reads (unless ``reload`` already read it),
        then one per content change."""
        if not self.loads:
            first = self.reload()
            if first is not None:
                yield first
        while True:
            await asyncio.sleep(self.poll_interval)
            if self.changed_on_disk():
                snapshot = self.reload()
                if snapshot is not None:
                    yield snapshot


def secret_dir_lookup(directory: Path | str) -> Callable[[str, str], str | None]:
    """BGP passwords from a directory laid out as a mounted Secret: ``<dir>/<name>/<key>``."""
    root = Path(directory)

    def lookup(name: str, key: str) -> str | None:
        if os.sep in name or os.sep in key or name.startswith(".") or key.startswith("."):
            return None
        try:
            return (root / name / key).read_text().rstrip("\n")
        except OSError:
            return None

    return lookup
