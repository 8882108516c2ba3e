"""Leader election with a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does: one replica holds
the lease and renews it; the others watch it expire and take it over. Only the leader schedules.

Writes are updates (PUT) carrying the lease's resourceVersion, so the API server refuses (409) the second of two
replicas that race for an expired lease; the loser stays a follower. Times in s.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("rlsched.leader")


def _now_micro() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """`run()` in a thread; `is_leader` tells the scheduler whether to schedule; `stop()` releases the lease."""

    def __init__(self, coordination_api: Any, namespace: str, name: str = "rlsched-scheduler", *,
                 identity: str | None = None, lease_duration_s: float = 15.0, renew_every_s: float = 2.0,
                 request_timeout_s: float = 10.0, clock: Callable[[], float] = time.time):
        self.api, self.namespace, self.name = coordination_api, namespace, name
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.lease_duration_s, self.renew_every_s = lease_duration_s, renew_every_s
        self.timeout, self.clock = request_timeout_s, clock
        self._leader = False
        self._renewed = 0.0
        self._stop = threading.Event()

    @property
    def is_leader(self) -> bool:
        # a leader that could not renew for a whole lease duration must assume it lost the lease
        return self._leader and self.clock() - self._renewed < self.lease_duration_s

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.try_acquire_or_renew()
            except Exception as exc:  # noqa: BLE001 - the API is away: keep trying, lose leadership on expiry
                log.info("lease %s/%s: %s", self.namespace, self.name, type(exc).__name__)
            self._stop.wait(self.renew_every_s)

    def start(self) -> None:
        threading.Thread(target=self.run, name="rlsched-leader", daemon=True).start()

    def try_acquire_or_renew(self) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(transitions=0, acquired=True)}
            try:
                self.api.create_namespaced_lease(self.namespace, body, _request_timeout=self.timeout)
            except ApiException as exc2:
                if exc2.status == 409:  # another replica created it first
                    return self._set(False)
                raise
            log.info("leader: %s (lease created)", self.identity)
            return self._set(True)
        spec = lease.spec
        holder = spec.holder_identity if spec else None
        renewed = spec.renew_time.timestamp() if spec and spec.renew_time else None
        duration = (spec.lease_duration_seconds if spec and spec.lease_duration_seconds else self.lease_duration_s)
        expired = renewed is None or self.clock() - renewed > duration
        if holder != self.identity and holder and not expired:
            return self._set(False)
        transitions = (spec.lease_transitions or 0) if spec else 0
        taking_over = holder != self.identity
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             **({"resourceVersion": lease.metadata.resource_version}
                                if lease.metadata and lease.metadata.resource_version else {})},
                "spec": self._spec(transitions=transitions + (1 if taking_over else 0), acquired=taking_over,
                                   previous=spec)}
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, body, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 409:  # another replica updated it first: it won
                return self._set(False)
            raise
        if taking_over:
            log.info("leader: %s (took over from %s)", self.identity, holder or "nobody")
        return self._set(True)

    def _spec(self, *, transitions: int, acquired: bool, previous: Any = None) -> dict[str, Any]:
        now = _now_micro()
        acquire = now if acquired or previous is None or previous.acquire_time is None else \
            previous.acquire_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration_s),
                "acquireTime": acquire, "renewTime": now, "leaseTransitions": transitions}

    def _set(self, leader: bool) -> bool:
        if leader:
            self._renewed = self.clock()
        elif self._leader:
            log.warning("leadership lost: %s", self.identity)
        self._leader = leader
        return leader

    def stop(self) -> None:
        """Stop renewing and release the lease (an empty holder), so another replica takes over at once."""
        self._stop.set()
        if not self._leader:
            return
        self._leader = False
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
            if lease.spec and lease.spec.holder_identity == self.identity:
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace,
                                     **({"resourceVersion": lease.metadata.resource_version}
                                        if lease.metadata and lease.metadata.resource_version else {})},
                        "spec": {"holderIdentity": "", "leaseDurationSeconds": 1,
                                 "leaseTransitions": lease.spec.lease_transitions or 0}}
                self.api.replace_namespaced_lease(self.name, self.namespace, body, _request_timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - the lease expires anyway
            log.info("releasing lease %s/%s: %s", self.namespace, self.name, type(exc).__name__)

