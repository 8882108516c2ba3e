"""The pod placement environment over the simulated cluster."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlmodel.envs.observation import (
    IDLE_S_MAX,
    NODE_FEATURES,
    POD_FEATURES,
    ObservationBuilder,
    PodSignals,
    workload_history,
)
from rlmodel.errors import PolicyError
from rlmodel.sim.backend import ClusterBackend
from rlmodel.sim.cluster import ClusterSim
from rlmodel.sim.podtrace import MAX_PRIORITY
from rlmodel.sim.scenario import MAX_SECONDS, Scenario, load_scenario
from rlmodel.sim.workload import sample_trace

__all__ = ["NODE_FEATURES", "POD_FEATURES", "PodPlacementEnv"]


class PodPlacementEnv(gym.Env):
    """Place arriving pods on the nodes of a simulated cluster, paying for energy.

    ## Description
    One episode is one trace of pods arriving over time (scenario `[workload]`). At each decision
    the agent sees every node and the arriving pod and picks the node to bind it to. Between
    decisions the digital twin (`rlmodel.sim.ClusterSim`) runs the cluster: power from each node's
    curve, processor-sharing slowdown when CPU demand exceeds cores, optional idle sleep and wake.
    Pods that fit on no node are recorded as unschedulable and skipped without a decision.

    ## Action space
    `Discrete(N)`: the index of the node, N = number of nodes in the scenario. Only nodes where the
    pod's requests fit are valid; `info["action_mask"]` (bool, shape (N,)) marks them. An invalid
    action is not an error: the pod is rejected and counted in `info["invalid_actions"]` (and the
    unschedulable count), so a masked agent never takes one.

    ## Observation space
    `Dict(nodes=Box(0, high, (N, 15), float32), pod=Box(low, high, (16,), float32))`, in physical units so
    that one network with weights shared across nodes serves any N (built by
    `rlmodel.envs.observation.ObservationBuilder`, which a live cluster view uses too):
    nodes columns `NODE_FEATURES`: cpu_cores, memory_gib, cpu_requested_cores, memory_requested_gib,
    cpu_used_cores, watts, watts_if_placed, idle_watts, peak_watts, asleep, waking_s, pods, fits,
    idle_s (how long an awake node has been empty, clipped at 3600), sleep_after_s (0: never sleeps);
    pod `POD_FEATURES`: cpu_request_cores, memory_request_gib, episode_progress; the pod's owner kind
    (one-hot over Pod, Job, CronJob, Deployment, StatefulSet, Other) and QoS class (one-hot over BestEffort,
    Burstable, Guaranteed); priority (the only column that may be negative); replicas (pods created with it);
    workload_completed and workload_mean_run_s: how many pods of its workload finished before now and their
    mean run time from start to finish, s (with none: the mean run time of every pod finished so far, or 600 s
    before any has; `rlmodel.envs.observation.workload_history`). Nothing in the observation depends on a
    pod's run time before that pod has finished. A live cluster view computes the same signals from pod owner
    references, QoS class, priority, startTime and the containers' finishedAt.

    ## Reward
    `-(delta_energy_j + w * delta_overload_pod_s + u * delta_unschedulable) / energy_scale_j`, counted
    from the previous decision to this one (the last step includes the drain until every pod has
    finished), with `w = reward.overload_penalty_j_per_pod_s`, `u = reward.unschedulable_penalty_j`
    (per pod left unplaced) and `energy_scale_j` from the scenario (`RewardSpec.cost_j`). The return of
    an episode is therefore `-(energy_j + w * overload_pod_s + u * unschedulable) / energy_scale_j`
    (with w = u = 0, minus the total energy).

    ## Backends
    `PodPlacementEnv(scenario)` runs the digital twin. `PodPlacementEnv(scenario, cluster=MinikubeCluster(...))`
    runs the same spaces and reward on a real cluster. Any `rlmodel.sim.backend.ClusterBackend` can stand
    behind the env (`rlmodel.testbed.backend`): each decision
    binds a real pod and is followed by one measurement window whose energy comes from the host power
    monitor and whose overload comes from JMeter latencies against the service level. With the twin only,
    `snapshot()` and `restore(snap)` let evaluation tools try other actions from one decision.

    ## Starting state
    Every node awake and empty at t = 0; the first pod arrives at t = 0.

    ## Episode end
    `terminated` after the last pod was placed or rejected and every pod has finished. There is no
    truncation (episodes are finite by construction); wrap in `TimeLimit` if you need one.

    ## Info
    Every step: `action_mask`, `time_s`, `pod` (index in the trace). At the end: `energy_j`,
    `overload_pod_s`, `wake_delay_pod_s`, `unschedulable`, `invalid_actions`, `wakeups`,
    `makespan_s`, `mean_watts`.

    ## Version history
    v0: first version.
    v1: pods left unplaced are charged `reward.unschedulable_penalty_j`.
    v2: the pod part grows from 3 to 16 columns: owner kind, QoS class, priority, replicas and the workload's
        run-time history (scenario workload classes and traces carry them); `reward.imbalance_penalty_j`.
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: Scenario | str = "hetero-sleep", cluster: ClusterBackend | None = None):
        self.scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        # the digital twin by default; `rlmodel.testbed.backend.MinikubeCluster` is the real cluster behind the
        # same interface (rlmodel.sim.backend.ClusterBackend)
        self.sim: ClusterBackend = ClusterSim(self.scenario) if cluster is None else cluster
        n = self.sim.num_nodes
        self.num_nodes = n
        self.action_space = spaces.Discrete(n)
        self.observation_space = spaces.Dict(
            {
                "nodes": spaces.Box(0.0, self._node_high(), dtype=np.float32),
                "pod": spaces.Box(self._pod_low(), self._pod_high(), dtype=np.float32),
            }
        )
        self._observation = ObservationBuilder(self.sim)
        self._reward = self.scenario.reward
        self._scale = self.scenario.reward.energy_scale_j
        self._pod = 0
        self._mask = np.zeros(n, dtype=bool)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.trace = sample_trace(self.scenario.workload, self.np_random).with_signals()
        self.sim.reset(self.trace)
        self._pod = 0
        self.invalid_actions = 0
        self._accounted = 0.0
        self._done = self._advance_to_next_decision()
        return self._observe(), self._info()

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called after the episode ended; call reset()")
        sim = self.sim
        a = int(action)
        if 0 <= a < self.num_nodes and self._mask[a]:
            sim.place(self._pod, a)
        else:
            sim.reject(self._pod)
            self.invalid_actions += 1
        self._pod += 1
        self._done = self._advance_to_next_decision()
        cost = self._reward.cost_j(sim.energy_j, sim.overload_pod_s, sim.unschedulable, sim.imbalance_s)
        reward = -(cost - self._accounted) / self._scale
        self._accounted = cost
        info = self._info()
        if self._done:
            info.update(self.episode_metrics())
        return self._observe(), float(reward), self._done, False, info

    # ------------------------------------------------------------------ evaluation tools (the twin only)
    def snapshot(self) -> tuple:
        """The episode's whole state at this decision, for `restore`: evaluation tools try other actions from one
        decision (`rlmodel.evaluation.action_values`). The digital twin only; the trace is not copied (an episode
        keeps its trace until the next `reset`)."""
        if not isinstance(self.sim, ClusterSim):
            raise PolicyError("snapshots need the simulated cluster (--backend sim)")
        return (self.sim.snapshot(), self._pod, self._done, self._accounted, self.invalid_actions,
                self._mask.copy())

    def restore(self, snap: tuple) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Back to the decision `snap` was taken at (same episode); returns its (observation, info) again."""
        if not isinstance(self.sim, ClusterSim):
            raise PolicyError("snapshots need the simulated cluster (--backend sim)")
        sim_snap, self._pod, self._done, self._accounted, self.invalid_actions, mask = snap
        self.sim.restore(sim_snap)
        self._mask = mask.copy()
        return self._observe(), self._info()

    # ------------------------------------------------------------------ helpers
    @property
    def pod_index(self) -> int:
        """Index in the trace of the pod awaiting a decision (after the end: the number of pods)."""
        return self._pod

    def episode_metrics(self) -> dict[str, float]:
        """Totals of the episode so far (complete once terminated)."""
        sim = self.sim
        return {
            "energy_j": sim.energy_j,
            "overload_pod_s": sim.overload_pod_s,
            "imbalance_s": sim.imbalance_s,
            "wake_delay_pod_s": sim.wake_delay_pod_s,
            "unschedulable": float(sim.unschedulable),
            "invalid_actions": float(self.invalid_actions),
            "wakeups": float(sim.wakeups),
            "makespan_s": sim.now_s,
            "mean_watts": sim.energy_j / sim.measured_s if sim.measured_s > 0 else 0.0,
        }

    def _node_high(self) -> np.ndarray:
        """Upper bounds of the node features (finite, so that the Box is a real spec)."""
        sim, wl = self.sim, self.scenario.workload
        max_demand = wl.pods_per_episode * wl.max_usage_cores
        max_watts = float(max(sim.peak_watts.max(), self.scenario.sleep_watts))
        col = {
            "cpu_cores": sim.cores.max(), "memory_gib": sim.memory_gib.max(),
            "cpu_requested_cores": sim.cores.max(), "memory_requested_gib": sim.memory_gib.max(),
            "cpu_used_cores": max_demand, "watts": max_watts, "watts_if_placed": max_watts,
            "idle_watts": max_watts, "peak_watts": max_watts, "asleep": 1.0, "waking_s": self.scenario.wake_s,
            "pods": wl.pods_per_episode, "fits": 1.0, "idle_s": IDLE_S_MAX,
            "sleep_after_s": self.scenario.idle_sleep_after_s,
        }
        high = np.array([col[name] for name in NODE_FEATURES], dtype=np.float32) * np.float32(1.001)
        return np.tile(high, (self.num_nodes, 1))

    def _pod_high(self) -> np.ndarray:
        wl = self.scenario.workload
        col = {"cpu_request_cores": wl.cpu_request_cores[1], "memory_request_gib": wl.memory_request_gib[1],
               "episode_progress": 1.0, "priority": MAX_PRIORITY, "replicas": wl.max_replicas,
               "workload_completed": wl.pods_per_episode, "workload_mean_run_s": MAX_SECONDS}
        return np.array([col.get(name, 1.0) for name in POD_FEATURES], dtype=np.float32) * np.float32(1.001)

    def _pod_low(self) -> np.ndarray:
        return np.array([-MAX_PRIORITY * 1.001 if name == "priority" else 0.0 for name in POD_FEATURES],
                        dtype=np.float32)

    def _advance_to_next_decision(self) -> bool:
        """Move time to the next pod that fits somewhere; True when the episode is over."""
        sim, trace = self.sim, self.trace
        while self._pod < len(trace):
            sim.advance_to(float(trace.arrival_s[self._pod]))
            self._mask = sim.fits(float(trace.cpu_request_cores[self._pod]),
                                  float(trace.memory_request_gib[self._pod]))
            if self._mask.any():
                return False
            sim.reject(self._pod)
            self._pod += 1
        sim.drain()
        self._mask = np.zeros(self.num_nodes, dtype=bool)
        return True

    def _observe(self) -> dict[str, np.ndarray]:
        trace, i = self.trace, self._pod
        pod = None
        signals = None
        if i < len(trace):
            pod = (float(trace.cpu_request_cores[i]), float(trace.memory_request_gib[i]), i / len(trace))
            signals = self.pod_signals(i)
        return self._observation.build(self.sim, pod, self._mask, signals)

    def pod_signals(self, i: int) -> PodSignals:
        """What is known now of pod `i` besides its requests: its trace's labels and its workload's history."""
        trace, sim = self.trace, self.sim
        assert trace.workload is not None and trace.owner_kind is not None and trace.qos is not None
        assert trace.priority is not None and trace.replicas is not None
        done, mean_run = workload_history(trace.workload, sim.start_s, sim.finish_s, sim.now_s, int(trace.workload[i]))
        return PodSignals(owner_kind=int(trace.owner_kind[i]), qos=int(trace.qos[i]), priority=int(trace.priority[i]),
                          replicas=int(trace.replicas[i]), workload_completed=done, workload_mean_run_s=mean_run)

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self._mask.copy(), "time_s": self.sim.now_s, "pod": self._pod}
