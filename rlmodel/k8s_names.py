"""Kubernetes object names, checked as the API server checks them (k8s.io/apimachinery `validation`).

A namespace is a DNS-1123 label; a scheduler's name (a pod's `spec.schedulerName`) is a DNS-1123 subdomain. A
value the API server would refuse can never match an object: a scheduler told to watch namespace `Default` or
`my ns` would wait for pods that cannot exist, silently. So such a value is refused up front, with one line.
"""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LABEL_RE = re.compile(rf"{_LABEL}\Z")
_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*\Z")
LABEL_MAX = 63
SUBDOMAIN_MAX = 253


def _problem(value: str, max_len: int, pattern: re.Pattern[str], rule: str) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > max_len:
        return f"must be at most {max_len} characters, got {len(value)}"
    return None if pattern.match(value) else f"must be {rule}, got {value!r}"


def dns_label_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 label (a namespace's name), or None when it is one."""
    return _problem(value, LABEL_MAX, _LABEL_RE, "lower-case letters, digits and '-', starting and ending with a "
                    "letter or digit (a DNS-1123 label)")


def dns_subdomain_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 subdomain (e.g. a pod's spec.schedulerName), or None when it is one."""
    return _problem(value, SUBDOMAIN_MAX, _SUBDOMAIN_RE, "lower-case letters, digits, '-' and '.', each "
                    "'.'-separated part starting and ending with a letter or digit (a DNS-1123 subdomain)")
