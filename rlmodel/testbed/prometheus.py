"""Prometheus scrape configuration for the testbed, rendered for the actual addresses.

The output is JSON, which is valid YAML, so Prometheus reads it as its config file as is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from rlmodel.atomic import atomic_path


def render_config(
    *,
    node_exporters: Sequence[str] | Mapping[str, str],
    resource_blockers: Sequence[str] | Mapping[str, str],
    testapps: Sequence[str] | Mapping[str, str],
    power_monitor: str | None = None,
    scrape_interval_s: float = 5.0,
) -> dict:
    """Prometheus config with one job per kind of target.

    Targets are HOST:PORT strings, or a mapping node name -> HOST:PORT, in which case every series
    scraped from that target carries the label `node="NAME"` (how the harness finds a node's series).
    """

    def job(name: str, targets: Sequence[str] | Mapping[str, str]) -> dict:
        if isinstance(targets, Mapping):
            static = [{"targets": [t], "labels": {"node": node}} for node, t in targets.items()]
        else:
            static = [{"targets": list(targets)}] if targets else []
        return {"job_name": name, "static_configs": static, "metrics_path": "/metrics"}

    interval = f"{scrape_interval_s:g}s"
    jobs = [job("node-exporter", node_exporters), job("resource-blocker", resource_blockers),
            job("testapp", testapps)]
    if power_monitor:
        jobs.append(job("host-power", [power_monitor]))
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [j for j in jobs if j["static_configs"]],
    }


def write_config(path: Path, config: dict) -> None:
    """Write the config atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
