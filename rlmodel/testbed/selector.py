"""Kubernetes label selectors (`kubernetes.node_selector`), parsed and applied as the API server does.

The grammar is the API server's: terms separated by commas, each one of
``KEY=VALUE``, ``KEY==VALUE``, ``KEY!=VALUE``, ``KEY in (V1,V2)``, ``KEY notin (V1,V2)``, ``KEY`` (the label
exists) or ``!KEY`` (it does not). A node matches when every term does. The selector is sent to the API
server and also applied here, so a server that ignores it (kmock in the tests) selects the same nodes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rlmodel.errors import ConfigError

# a label key: an optional DNS-subdomain prefix and a name; a value: up to 63 characters, alphanumeric at the ends
_KEY = r"(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
_TERM = re.compile(
    rf"""\s*(?:
        (?P<not>!)\s*(?P<nkey>{_KEY})
      | (?P<key>{_KEY})\s*(?:
            (?P<op>==|=|!=)\s*(?P<value>{_VALUE})
          | \s(?P<setop>in|notin)\s*\(\s*(?P<values>[^()]*)\)
        )?
    )\s*(?:,|$)""", re.VERBOSE)
_VALUE_RE = re.compile(rf"^{_VALUE}$")
MAX_SELECTOR_CHARS = 4096


@dataclass(frozen=True)
class Requirement:
    """One term: `key` `op` `values` (op: =, !=, in, notin, exists, !exists)."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = self.key in labels
        if self.op == "exists":
            return have
        if self.op == "!exists":
            return not have
        if self.op in ("=", "in"):
            return have and labels[self.key] in self.values
        return not have or labels[self.key] not in self.values  # != and notin match a node without the label


@dataclass(frozen=True)
class Selector:
    """A parsed label selector; `str(selector)` is the text sent to the API server."""

    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return self.text


def parse_selector(text: str, *, where: str = "kubernetes.node_selector") -> Selector:
    """The selector `text` ("" selects everything), or ConfigError naming `where` and the bad term."""
    if len(text) > MAX_SELECTOR_CHARS:
        raise ConfigError(f"{where}: longer than {MAX_SELECTOR_CHARS} characters")
    stripped = text.strip()
    reqs: list[Requirement] = []
    pos = 0
    while pos < len(stripped):
        m = _TERM.match(stripped, pos)
        if not m or m.end() == pos:
            bad = stripped[pos:].split(",")[0].strip()[:80]
            raise ConfigError(f"{where}: invalid term {bad!r} in label selector {stripped[:120]!r} (expected "
                              "KEY=VALUE, KEY!=VALUE, KEY in (A,B), KEY notin (A,B), KEY or !KEY)")
        if m.group("not"):
            reqs.append(Requirement(m.group("nkey"), "!exists"))
        elif m.group("op"):
            op = "=" if m.group("op") in ("=", "==") else "!="
            reqs.append(Requirement(m.group("key"), op, (m.group("value"),)))
        elif m.group("setop"):
            values = tuple(v.strip() for v in m.group("values").split(",") if v.strip())
            bad_values = [v for v in values if not _VALUE_RE.match(v)]
            if not values or bad_values:
                raise ConfigError(f"{where}: {m.group('key')} {m.group('setop')} (...): "
                                  + (f"invalid value {bad_values[0][:63]!r}" if bad_values else "no values"))
            reqs.append(Requirement(m.group("key"), m.group("setop"), values))
        else:
            reqs.append(Requirement(m.group("key"), "exists"))
        pos = m.end()
        if stripped[m.end() - 1:m.end()] == "," and pos >= len(stripped):
            raise ConfigError(f"{where}: label selector {stripped[:120]!r} ends with a comma")
    return Selector(stripped, tuple(reqs))
