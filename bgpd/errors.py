"""The error a bad setting raises, wherever it is read (flags, environment, datastore URL).

Rules:
1. One ``ConfigError`` for every setting: it names the setting and the bad value, so the CLI
   prints one line and exits 2 (``bgpd.cli``).
2. A leaf module: ``bgpd.config`` and ``bgpd.datastore.etcd_settings`` both raise it without
   importing each other.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid: names the setting and the value (rule 1)."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        super().__init__(f"invalid {name} {value!r}: {reason}")
        self.name = name
        self.value = value
