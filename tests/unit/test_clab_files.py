"""Every containerlab topology in containerlab/ is valid containerlab and realisable by netlab.

Rules:
1. Validation uses the schema copy inside the repository (containerlab/schema/), so the repo
   checks itself without ../shared. The schema's patterns use Go's ``\\p{N}\\p{L}`` classes,
   which Python's ``re`` lacks; they are rewritten to the equivalent ``[^\\W_]`` (a Unicode
   letter or digit) before matching. Nothing else in the schema is changed.
2. The runner's parser (``lab_topology.load_lab``) accepts each file and every node gets a role,
   every bind source exists, and every link endpoint names a node of the file.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CLAB_DIR = Path(__file__).resolve().parents[2] / "containerlab"
SCHEMA = CLAB_DIR / "schema" / "clab.schema.json"
TOPOLOGIES = sorted(CLAB_DIR.glob("*.clab.yml"))
EXPECTED_LABS = {"mesh3", "rr", "tor", "cross-subnet", "interop"}

sys.path.insert(0, str(CLAB_DIR))

from lab_topology import ROLES, load_lab  # noqa: E402


def _python_pattern(pattern: str) -> str:
    return pattern.replace(r"[\p{N}\p{L}]", r"[^\W_]")


def _pattern(
    validator: Any, pattern: str, instance: object, schema: object
) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, str) and not re.search(_python_pattern(pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _pattern})


@pytest.fixture(scope="module")
def validator() -> Any:
    return Validator(json.loads(SCHEMA.read_text()))


def test_every_lab_of_the_issue_is_there() -> None:
    names = {yaml.safe_load(path.read_text())["name"] for path in TOPOLOGIES}
    assert EXPECTED_LABS <= names, EXPECTED_LABS - names


@pytest.mark.parametrize("path", TOPOLOGIES, ids=[p.name for p in TOPOLOGIES])
def test_valid_against_containerlab_schema(validator: Any, path: Path) -> None:
    errors = sorted(validator.iter_errors(yaml.safe_load(path.read_text())), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_topology(validator: Any) -> None:
    broken = {"name": "x", "topology": {"nodes": {"a": {"kind": "linux", "binds": "nope"}}}}
    assert list(validator.iter_errors(broken))


@pytest.mark.parametrize("path", TOPOLOGIES, ids=[p.name for p in TOPOLOGIES])
def test_runner_parses(path: Path) -> None:
    lab = load_lab(path)
    assert lab.nodes and lab.links
    names = {node.name for node in lab.nodes}
    for node in lab.nodes:
        assert node.role in ROLES
        for bind in node.binds:
            assert bind.host.exists(), f"{path.name}: node {node.name} binds missing {bind.host}"
    for link in lab.links:
        assert {link.a.node, link.b.node} <= names
