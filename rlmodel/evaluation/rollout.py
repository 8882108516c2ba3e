"""How much can an online scheduler gain over efficient-first? A look-ahead planner that samples the future.

The hindsight search (`rlmodel.evaluation.hindsight`) knows every pod's run time in advance, which no
scheduler does. This planner knows only what a scheduler could know at the moment of the decision:

* the arriving pod's requests (not its actual usage or run time);
* for every bound pod, its usage and the work it has done so far (from its start time and the
  node's slowdown); for the pods of the episode still to come, only how many there are;
* the scenario's workload distributions (arrival rate, request, usage and run-time ranges): a
  scheduler can learn these from history, and the DQN learns them implicitly in training.

At each decision it draws `samples` possible futures consistent with that knowledge: the pod's usage
and run time; the remaining run time of each running pod given the work it has done (run times are
uniform on `duration_s`, so a pod that has done d s of work has U(max(d, low), high) - d left);
the arrivals, requests, usage and run times of the pods still to come. With workload classes or a trace, the
pods to come are a fresh draw of the workload (classes, batches, the daily cycle from its start; a trace window
from another offset) shifted to start one gap from now, and a bound pod's run time and usage are drawn from
the envelope of the classes' ranges: a coarser belief than the classes allow. For every feasible node it
places the pod there and plays efficient-first to the end of the episode in each sampled future, in
the twin (common random numbers: every node is tried in the same futures). It then keeps
efficient-first's own choice unless another node is cheaper on average by more than `z` standard
errors of the paired difference, so that sampling noise does not make it worse than its base policy.
This is one step of policy improvement over efficient-first (Bertsekas' rollout algorithm), with the
environment's own objective (energy plus penalties).

How much of the gap to the hindsight schedules is missing information, and how much is the algorithm?
`information` runs the same planner knowing more than a scheduler can:

* "online" (the default): as above.
* "run-times": the true usage and run time of the arriving pod and of every bound pod (as if each pod
  declared them, say as an annotation); later pods are still sampled.
* "clairvoyant": the whole future, later pods included. One sampled future is then the real one, so
  the planner moves to the cheapest node whenever it is cheaper at all (`samples` and `z` are unused).

It is an evaluation tool, like the hindsight search, not a scheduler to deploy: it reads the twin's
state and replays the rest of the episode `samples` x candidates times per decision (about 25 s per
60-pod episode at 64 samples on one core). `benchmarks/online_lookahead.py` reports its figures.
"""

from __future__ import annotations

import numpy as np

from rlmodel.envs.placement import PodPlacementEnv
from rlmodel.errors import PolicyError
from rlmodel.policies.base import Obs
from rlmodel.policies.heuristics import efficient_first_scores
from rlmodel.sim.cluster import ASLEEP, ClusterSim
from rlmodel.sim.workload import sample_pods

INFORMATION = ("online", "run-times", "clairvoyant")


def efficient_first_node(sim: ClusterSim, cpu_request: float, memory_request: float) -> int:
    """Efficient-first's choice read from the simulator's state (-1: the pod fits nowhere).

    `rlmodel.policies.heuristics.efficient_first_scores` on the twin's arrays, without building an
    observation; ties go to the lowest index instead of a random one.
    """
    mask = sim.fits(cpu_request, memory_request)
    if not mask.any():
        return -1
    asleep = np.fromiter((s == ASLEEP for s in sim.state), dtype=np.float64, count=sim.num_nodes)
    scores = efficient_first_scores(asleep, sim.peak_watts, sim.cores, np.asarray(sim.cpu_requested))
    return int(np.argmax(np.where(mask, scores, -np.inf)))


class RolloutPlanner:
    """Monte Carlo look-ahead over efficient-first (see the module docstring); the `Policy` protocol.

    Args:
        env: the environment the planner acts in; it must run the digital twin (the planner reads its state).
        samples: possible futures drawn per decision.
        z: how many standard errors better than efficient-first's choice another node must be.
        seed: seeds the sampled futures (with the episode's seed from `reset`).
        information: what the planner knows of the future: "online", "run-times" or "clairvoyant" (see the
            module docstring; only "online" is a scheduler that could run).
    """

    name = "rollout"

    def __init__(self, env: PodPlacementEnv, *, samples: int = 64, z: float = 2.0, seed: int = 0,
                 information: str = "online"):
        if not isinstance(env.sim, ClusterSim):
            raise PolicyError("the rollout planner needs the simulated cluster (--backend sim)")
        if information not in INFORMATION:
            raise PolicyError(f"rollout information must be one of {', '.join(INFORMATION)}, got {information!r}")
        if information == "clairvoyant":
            samples, z = 1, 0.0
        elif samples < 2:
            raise PolicyError(f"rollout samples must be >= 2, got {samples}")
        self.env, self.samples, self.z, self.seed, self.information = env, samples, z, seed, information
        self._twin = ClusterSim(env.scenario)
        self._rng = np.random.default_rng(seed)
        self.deviations = 0  # decisions (this episode) where the planner overruled efficient-first

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng([self.seed, 0 if seed is None else seed])
        self.deviations = 0

    def predict(self, obs: Obs, action_mask: np.ndarray) -> int:
        candidates = np.flatnonzero(action_mask)
        sim = self.env.sim
        assert isinstance(sim, ClusterSim)
        pod = self.env.pod_index
        base = efficient_first_node(sim, sim._cpu_req_pod[pod], sim._mem_req_pod[pod])
        if candidates.size <= 1:
            return int(candidates[0]) if candidates.size else base
        costs = self.sampled_costs(candidates)
        diff = costs - costs[:, [int(np.flatnonzero(candidates == base)[0])]]
        mean = diff.mean(axis=0)
        stderr = diff.std(axis=0, ddof=1) / np.sqrt(self.samples) if self.samples > 1 else np.zeros_like(mean)
        better = mean < -self.z * stderr - 1e-6
        if not better.any():
            return base
        self.deviations += 1
        return int(candidates[int(np.argmin(np.where(better, mean, np.inf)))])

    def sampled_costs(self, candidates: np.ndarray) -> np.ndarray:
        """(samples, candidates) cost in J of placing the pod on each candidate, then efficient-first, per future."""
        sim, twin, rng = self.env.sim, self._twin, self._rng
        assert isinstance(sim, ClusterSim) and sim.trace is not None
        wl, reward = self.env.scenario.workload, self.env.scenario.reward
        low, high = wl.duration_s
        pod, n_pods = self.env.pod_index, len(sim.trace)
        snap, progress = sim.snapshot(), sim.progress()
        costs = np.empty((self.samples, candidates.size))
        knows_run_times = self.information != "online"
        for k in range(self.samples):
            usage, work = list(sim._usage), list(sim._work)
            cpu, mem = list(sim._cpu_req_pod), list(sim._mem_req_pod)
            # this pod: its requests are known, its usage and run time are not (unless declared)
            if not knows_run_times:
                usage[pod] = cpu[pod] * rng.uniform(*wl.usage_of_request)
                work[pod] = rng.uniform(low, high)
            # bound pods: the run time left, given the work done
            remaining = {}
            for p, done in progress:
                total = work[p] if knows_run_times else rng.uniform(max(done, low), high)
                work[p] = total  # waiting pods (done 0) start later with this run time
                remaining[p] = max(total - done, 0.0)
            if self.information == "clairvoyant":  # the real arrivals, requests, usage and run times
                arrival = np.asarray(sim.trace.arrival_s[pod + 1:], dtype=np.float64)
            else:  # pods still to come: Poisson arrivals (memoryless, so the next gap starts now), fresh draws
                later = sample_pods(wl, rng, n_pods - pod - 1, start_s=sim.now_s)
                arrival = later.arrival_s
                cpu[pod + 1:], mem[pod + 1:] = later.cpu_request_cores.tolist(), later.memory_request_gib.tolist()
                usage[pod + 1:], work[pod + 1:] = later.usage_cores.tolist(), later.work_s.tolist()
            for ci, node in enumerate(candidates):
                twin.branch(snap, usage_cores=usage, work_s=work, cpu_request_cores=cpu, memory_request_gib=mem,
                            remaining_s=remaining)
                twin.place(pod, int(node))
                for j in range(pod + 1, n_pods):
                    twin.advance_to(float(arrival[j - pod - 1]))
                    a = efficient_first_node(twin, cpu[j], mem[j])
                    if a < 0:
                        twin.reject(j)
                    else:
                        twin.place(j, a)
                twin.drain()
                costs[k, ci] = reward.cost_j(twin.energy_j, twin.overload_pod_s, twin.unschedulable, twin.imbalance_s)
        return costs
