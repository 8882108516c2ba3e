"""DQN for pod placement, in one readable loop (after CleanRL's dqn.py).

Double-DQN targets, a target network, Huber loss, gradient clipping, action masking both when acting
and in the max over next actions, a linear epsilon schedule, one seeding block. Every node bids
with the same network (`NodeScorer`), so the trained model serves any cluster size.

Learning from demonstrations (DQfD, Hester et al., "Deep Q-learning from Demonstrations", AAAI 2018):
a baseline policy (efficient-first by default) plays `demo_episodes` episodes into a buffer of their
own; the network is pretrained on them (TD loss plus a large-margin loss that ranks the
demonstrator's node above every other feasible node by `margin`), then the agent acts and every batch
mixes its own transitions with demonstrations, the margin loss applying to the latter only.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rlmodel.agents.features import FEATURE_SCHEMA_VERSION, FEATURES, NUM_FEATURES, node_features
from rlmodel.agents.model_file import FORMAT, FORMAT_VERSION, ModelError, load_model, save_model
from rlmodel.agents.policy import DQNPolicy
from rlmodel.agents.qnet import NodeScorer, masked_argmax
from rlmodel.envs.placement import PodPlacementEnv
from rlmodel.evaluation.benchmark import run_episode
from rlmodel.fielddocs import field_docs
from rlmodel.policies import make_policy
from rlmodel.sim.scenario import Scenario

# Training episodes draw their traces from seeds at or above this, so that benchmark seeds (below it)
# are held out; validation episodes use their own block.
TRAIN_SEED_OFFSET = 1_000_000
VALIDATION_SEED_OFFSET = 900_000  # 900,000-900,019
DEMO_SEED_OFFSET = 2_000_000  # demonstrations: their own block, disjoint from training traces


@dataclass
class DQNConfig:
    """Hyperparameters of one training run (stored in the model file)."""

    total_steps: int = 60_000
    """environment steps (pod placements) to train for"""
    learning_rate: float = 5e-4
    """Adam learning rate"""
    buffer_size: int = 50_000
    """replay buffer capacity, transitions"""
    batch_size: int = 64
    """transitions per gradient step"""
    gamma: float = 0.99
    """discount per decision"""
    n_step: int = 3
    """steps of real rewards before bootstrapping (1: classic DQN)"""
    target_update_every: int = 500
    """steps between copies of the online network into the target network"""
    exploration_start: float = 0.3
    """epsilon at the first step (low: with demonstrations the agent starts from a good policy)"""
    exploration_end: float = 0.02
    """epsilon after the decay"""
    exploration_fraction: float = 0.4
    """fraction of total_steps over which epsilon decays linearly"""
    guide: str = ""
    """a baseline policy (e.g. "efficient-first") that takes half of the exploratory actions; "" = uniform"""
    demonstrator: str = "efficient-first"
    """a baseline policy whose episodes fill a permanent demonstration buffer (DQfD, Hester et al. 2018):
    the network is pretrained on them and keeps a large-margin loss toward the demonstrator's choices;
    "" = no demonstrations"""
    demo_episodes: int = 200
    """episodes the demonstrator plays before training (its transitions stay in their own buffer)"""
    pretrain_steps: int = 3_000
    """gradient steps on the demonstrations alone before the agent acts"""
    demo_batch_fraction: float = 0.25
    """share of every batch drawn from the demonstrations once the agent acts"""
    margin: float = 0.3
    """large-margin loss: every other feasible node's Q plus this must not exceed the demonstrator's node's
    Q (in learning units, reward x reward_scale)"""
    margin_weight: float = 1.0
    """weight of the large-margin loss (applied to demonstration transitions only)"""
    learning_starts: int = 1_000
    """steps of experience collected before the first gradient step"""
    train_every: int = 1
    """environment steps per gradient step"""
    reward_scale: float = 0.01
    """multiplier from the environment's reward (kJ) to the learning target"""
    idle_baseline: bool = True
    """learn on reward + (all nodes' idle watts) x (time to the next decision): the same optimal policy
    (the added sum is the last decision's time, which no placement changes), far less noise"""
    max_grad_norm: float = 10.0
    """gradient clipping (L2 norm)"""
    hidden: int = 64
    """width of the node-scoring MLP"""
    layers: int = 2
    """hidden layers of the node-scoring MLP"""
    checkpoint_every: int = 5_000
    """steps between checkpoints of the model file; each checkpoint also validates the greedy policy"""
    validation_episodes: int = 20
    """episodes (fixed seeds, disjoint from training and benchmark seeds) that score each checkpoint; the
    model file's policy weights are those of the best-scoring checkpoint (0: always the latest)"""
    validation_tolerance: float = 0.002
    """a checkpoint replaces the best one only when its validation cost is lower by more than this
    fraction: smaller differences are noise on 20 episodes, and the first checkpoint (after pretraining
    on demonstrations) is the demonstrator's policy, which a noisy win must not displace"""
    seed: int = 1
    """seed of networks, exploration and training traces"""
    device: str = "auto"
    """"auto" (CUDA when present, else CPU), "cpu" or "cuda" """


@dataclass
class EpisodeLog:
    """One finished training episode, as written to the CSV log."""

    step: int
    episode: int
    energy_j: float
    overload_pod_s: float
    ret: float
    epsilon: float
    loss: float
    wall_s: float


class ReplayBuffer:
    """Fixed-size ring of n-step transitions for one cluster size N (features precomputed)."""

    def __init__(self, capacity: int, num_nodes: int, num_features: int, rng: np.random.Generator):
        self.capacity, self.rng = capacity, rng
        self.feats = np.zeros((capacity, num_nodes, num_features), dtype=np.float32)
        self.mask = np.zeros((capacity, num_nodes), dtype=bool)
        self.next_feats = np.zeros_like(self.feats)
        self.next_mask = np.zeros((capacity, num_nodes), dtype=bool)
        self.action = np.zeros(capacity, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.done = np.zeros(capacity, dtype=np.float32)
        self.pos = self.size = 0

    def add(self, feats, mask, action, reward, next_feats, next_mask, done) -> None:
        i = self.pos
        self.feats[i], self.mask[i], self.action[i], self.reward[i] = feats, mask, action, reward
        self.next_feats[i], self.next_mask[i], self.done[i] = next_feats, next_mask, done
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        idx = self.rng.integers(0, self.size, size=batch_size)
        return tuple(torch.from_numpy(a[idx]).to(device) for a in
                     (self.feats, self.mask, self.action, self.reward, self.next_feats, self.next_mask, self.done))

    def add_n_step(self, pending: list, next_feats, next_mask, terminated: bool, n: int, gamma: float) -> None:
        """Store the oldest of `pending` [(feats, mask, action, reward)] once n rewards (or the episode's
        end) are known; at the end, flush the shorter tails too. Store `terminated`, not `truncated`:
        only a real end stops bootstrapping."""
        if len(pending) < n and not terminated:
            return
        while pending:
            ret_n = sum(r * gamma**i for i, (*_, r) in enumerate(pending))
            f0, m0, a0, _ = pending[0]
            self.add(f0, m0, a0, ret_n, next_feats, next_mask, float(terminated))
            pending.pop(0)
            if not terminated:
                break  # slide the window by one


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """Linear decay from `start` to `end` over `duration` steps, then `end`."""
    if duration <= 0:
        return end
    return max(end, start + (end - start) * step / duration) if end < start else end


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def train(
    cfg: DQNConfig,
    scenario: Scenario,
    model_path: Path,
    *,
    resume: bool = False,
    log_csv: Path | None = None,
    on_episode: Callable[[EpisodeLog, int], None] | None = None,
    env: PodPlacementEnv | None = None,
) -> dict[str, Any]:
    """Train a DQN on `scenario` and write `model_path`; returns the model file's content.

    A checkpoint is written every `cfg.checkpoint_every` steps, at the end, and when interrupted
    (KeyboardInterrupt is re-raised after the checkpoint). Each scheduled checkpoint scores the greedy
    policy on `cfg.validation_episodes` fixed episodes; the file's `state_dict` (the policy) is the
    best so far, `last_state_dict` the latest weights. With `resume`, weights, optimizer, step
    and episode counters and random states continue from `model_path` (the replay buffer starts
    empty and refills before learning resumes). `on_episode(log, step)` is called after every episode.
    `env`: the environment to train in (default: the twin of `scenario`; pass one with a
    `MinikubeCluster` to train on the testbed). Validation and demonstrations always run in the twin
    of `scenario`. With `cfg.demonstrator`, the first checkpoint (step 0, after pretraining) is
    validated like the others, so the model file is never worse on validation than the pretrained net.
    """
    check_config(cfg)
    device = resolve_device(cfg.device)
    # ---- seeding: one block for every source of randomness
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    env = env if env is not None else PodPlacementEnv(scenario)
    guide = make_policy(cfg.guide) if cfg.guide else None
    baseline_kw = float(env.sim.idle_watts.sum()) / scenario.reward.energy_scale_j if cfg.idle_baseline else 0.0
    q_net = NodeScorer(NUM_FEATURES, cfg.hidden, cfg.layers).to(device)
    target_net = NodeScorer(NUM_FEATURES, cfg.hidden, cfg.layers).to(device)
    target_net.load_state_dict(q_net.state_dict())
    optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.learning_rate)
    start_step, episode = 0, 0
    best_state: dict[str, torch.Tensor] | None = None
    best_score = math.inf
    validation_env = PodPlacementEnv(scenario)
    if resume:
        prev = load_model(model_path, device=str(device)).data
        if prev["scenario"]["num_nodes"] != env.num_nodes:
            raise ModelError(f"{model_path}: trained on {prev['scenario']['num_nodes']} nodes, "
                             f"cannot resume on {env.num_nodes}")
        q_net.load_state_dict(prev.get("last_state_dict", prev["state_dict"]))
        target_net.load_state_dict(prev.get("target_state_dict", prev["state_dict"]))
        best_state, best_score = prev["state_dict"], float(prev["metrics"].get("validation_cost_kj", math.inf))
        if "optimizer" in prev:
            optimizer.load_state_dict(prev["optimizer"])
        start_step, episode = int(prev["global_step"]), int(prev["episodes"])
        if "rng" in prev:
            rng.bit_generator.state = prev["rng"]["numpy"]
            torch.set_rng_state(prev["rng"]["torch"])
    rb = ReplayBuffer(cfg.buffer_size, env.num_nodes, NUM_FEATURES, rng)
    learning_starts = cfg.learning_starts if not resume else start_step + max(cfg.batch_size, cfg.learning_starts // 4)
    recent: list[EpisodeLog] = []
    log_file = _open_log(log_csv, append=resume)
    started = time.perf_counter()
    loss_value = math.nan

    def validate() -> float:
        """Mean cost (kJ, energy plus penalties) of the greedy policy on the validation episodes."""
        greedy = DQNPolicy(q_net, device=str(device))  # the same policy the benchmark runs
        return float(np.mean([-run_episode(validation_env, greedy, VALIDATION_SEED_OFFSET + i).ret
                              for i in range(cfg.validation_episodes)]))

    def checkpoint(step: int, *, validate_now: bool) -> dict[str, Any]:
        nonlocal best_state, best_score
        current = {k: v.detach().cpu().clone() for k, v in q_net.state_dict().items()}
        score = math.nan
        if cfg.validation_episodes > 0 and validate_now:
            score = validate()
            if score < best_score * (1.0 - cfg.validation_tolerance):
                best_score, best_state = score, current
        if cfg.validation_episodes == 0 or best_state is None:
            best_state = current
        tail = recent[-20:]
        data = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "feature_schema": {"version": FEATURE_SCHEMA_VERSION, "features": list(FEATURES)},
            "network": {"hidden": cfg.hidden, "layers": cfg.layers, "num_features": NUM_FEATURES},
            "hyperparameters": dataclasses.asdict(cfg),
            "scenario": {"name": scenario.name, "source": scenario.source, "num_nodes": env.num_nodes},
            "seed": cfg.seed, "global_step": step, "episodes": episode,
            "metrics": {
                "episodes_in_mean": len(tail),
                "energy_j_mean": float(np.mean([e.energy_j for e in tail])) if tail else math.nan,
                "overload_pod_s_mean": float(np.mean([e.overload_pod_s for e in tail])) if tail else math.nan,
                "return_mean": float(np.mean([e.ret for e in tail])) if tail else math.nan,
                "train_wall_s": time.perf_counter() - started,
                "validation_cost_kj": best_score,
                "validation_cost_kj_latest": score,
            },
            "versions": {"torch": str(torch.__version__)},
            "state_dict": best_state,  # the policy: best checkpoint on the validation episodes
            "last_state_dict": current,  # where --resume continues
            "target_state_dict": {k: v.detach().cpu() for k, v in target_net.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()},
        }
        save_model(model_path, data)
        return data

    def shaped(reward: float, terminated: bool, dt_s: float) -> float:
        """The learning target's reward. Variance reduction: most of a step's energy is idle power times the
        (random) gap to the next arrival, which no placement changes. Adding it back on every step but the
        last shifts the return by (idle watts x last decision time), the same for every policy."""
        return (reward if terminated else reward + baseline_kw * dt_s) * cfg.reward_scale

    def gradient_step(agent_batch: int, demo_batch: int) -> float:
        """One Adam step on `agent_batch` replayed and `demo_batch` demonstration transitions."""
        parts = [rb.sample(agent_batch, device)] if agent_batch else []
        if demo_batch:
            assert demo_rb is not None, "demonstration batches need a demonstrator"
            parts.append(demo_rb.sample(demo_batch, device))
        b_feats, b_mask, b_action, b_reward, b_next_feats, b_next_mask, b_done = (
            torch.cat(cols) for cols in zip(*parts, strict=True))
        with torch.no_grad():
            # Double DQN: the online net picks the next node among feasible ones, the target net values it
            next_action = masked_argmax(q_net(b_next_feats), b_next_mask)
            next_q = target_net(b_next_feats).gather(1, next_action[:, None]).squeeze(1)
            # a terminal next state has no feasible node and no future
            next_q = torch.where(b_done > 0, torch.zeros_like(next_q), next_q)
            td_target = b_reward + cfg.gamma**cfg.n_step * next_q
        q_all = q_net(b_feats)
        q_taken = q_all.gather(1, b_action[:, None]).squeeze(1)
        loss = F.smooth_l1_loss(q_taken, td_target)
        if demo_batch:
            # large margin (DQfD): max over feasible a of Q(s, a) + margin [a != a_demo], minus Q(s, a_demo)
            q_d, a_d, m_d = q_all[agent_batch:], b_action[agent_batch:], b_mask[agent_batch:]
            bonus = cfg.margin * (1.0 - F.one_hot(a_d, q_d.shape[1]).to(q_d.dtype))
            best = torch.where(m_d, q_d + bonus, torch.finfo(q_d.dtype).min).max(dim=1).values
            loss = loss + cfg.margin_weight * (best - q_taken[agent_batch:]).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(q_net.parameters(), cfg.max_grad_norm)
        optimizer.step()
        return float(loss.item())

    step = start_step
    try:  # Ctrl-C anywhere below writes a checkpoint first
        # ---- demonstrations (DQfD): the demonstrator's episodes, then pretraining on them alone
        demo_rb: ReplayBuffer | None = None
        n_demo = 0
        if cfg.demonstrator:
            demonstrator = make_policy(cfg.demonstrator)
            demo_rb = ReplayBuffer(cfg.demo_episodes * scenario.workload.pods_per_episode, env.num_nodes,
                                   NUM_FEATURES, rng)
            demo_env = PodPlacementEnv(scenario)  # always the twin: demonstrations cost no testbed time
            for i in range(cfg.demo_episodes):
                seed = DEMO_SEED_OFFSET + cfg.seed * 100_000 + i
                obs, info = demo_env.reset(seed=seed)
                demonstrator.reset(seed=seed)
                feats, mask, terminated = node_features(obs), info["action_mask"], False
                demo_pending: list[tuple[np.ndarray, np.ndarray, int, float]] = []
                while not terminated:
                    action, t_decision = demonstrator.predict(obs, mask), demo_env.sim.now_s
                    obs, reward, terminated, _, info = demo_env.step(action)
                    demo_pending.append((feats, mask, action, shaped(reward, terminated, info["time_s"] - t_decision)))
                    feats, mask = node_features(obs), info["action_mask"]
                    demo_rb.add_n_step(demo_pending, feats, mask, terminated, cfg.n_step, cfg.gamma)
            n_demo = max(1, round(cfg.batch_size * cfg.demo_batch_fraction))
            if not resume:
                for k in range(cfg.pretrain_steps):
                    loss_value = gradient_step(0, cfg.batch_size)
                    if (k + 1) % cfg.target_update_every == 0:
                        target_net.load_state_dict(q_net.state_dict())
                target_net.load_state_dict(q_net.state_dict())
                checkpoint(start_step, validate_now=cfg.pretrain_steps > 0)

        obs, info = env.reset(seed=TRAIN_SEED_OFFSET + cfg.seed * 100_000 + episode)
        if guide is not None:
            guide.reset(seed=cfg.seed)
        feats, mask = node_features(obs), info["action_mask"]
        ep_return = 0.0
        # the last n_step (features, mask, action, reward)
        pending: list[tuple[np.ndarray, np.ndarray, int, float]] = []
        for step in range(start_step, cfg.total_steps):
            # ---- act: epsilon-greedy over the feasible nodes only
            epsilon = linear_schedule(cfg.exploration_start, cfg.exploration_end,
                                      int(cfg.exploration_fraction * cfg.total_steps), step)
            if rng.random() < epsilon:
                if guide is not None and rng.random() < 0.5:
                    action = guide.predict(obs, mask)
                else:
                    action = int(rng.choice(np.flatnonzero(mask)))
            else:
                with torch.no_grad():
                    q = q_net(torch.from_numpy(feats).to(device))
                    action = int(masked_argmax(q, torch.from_numpy(mask).to(device)).item())
            t_decision = env.sim.now_s
            next_obs, reward, terminated, truncated, info = env.step(action)
            next_feats, next_mask = node_features(next_obs), info["action_mask"]
            # n-step returns: a transition enters the buffer once n rewards (or the episode's end) are known
            pending.append((feats, mask, action, shaped(reward, terminated, info["time_s"] - t_decision)))
            rb.add_n_step(pending, next_feats, next_mask, terminated, cfg.n_step, cfg.gamma)
            ep_return += reward
            feats, mask, obs = next_feats, next_mask, next_obs

            if terminated or truncated:
                episode += 1
                m = env.episode_metrics()
                log = EpisodeLog(step + 1, episode, m["energy_j"], m["overload_pod_s"], ep_return, epsilon,
                                 loss_value, time.perf_counter() - started)
                recent.append(log)
                if log_file:
                    _write_log(log_file, log)
                if on_episode:
                    on_episode(log, step + 1)
                obs, info = env.reset(seed=TRAIN_SEED_OFFSET + cfg.seed * 100_000 + episode)
                if guide is not None:
                    guide.reset(seed=cfg.seed + episode)
                feats, mask = node_features(obs), info["action_mask"]
                ep_return = 0.0

            # ---- learn
            if step >= learning_starts and step % cfg.train_every == 0 and rb.size >= cfg.batch_size:
                loss_value = gradient_step(cfg.batch_size - n_demo, n_demo)

            if (step + 1) % cfg.target_update_every == 0:
                target_net.load_state_dict(q_net.state_dict())
            if (step + 1) % cfg.checkpoint_every == 0:
                checkpoint(step + 1, validate_now=step + 1 >= learning_starts)
    except KeyboardInterrupt:
        checkpoint(step, validate_now=False)
        raise
    finally:
        if log_file:
            log_file.close()
    return checkpoint(cfg.total_steps, validate_now=cfg.total_steps % cfg.checkpoint_every != 0)


LOG_COLUMNS = ["step", "episode", "energy_j", "overload_pod_s", "return", "epsilon", "loss", "wall_s"]


def _open_log(path: Path | None, *, append: bool):
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not append or not path.exists() or path.stat().st_size == 0
    fh = path.open("a" if append else "w", newline="", encoding="utf-8")
    if new:
        csv.writer(fh).writerow(LOG_COLUMNS)
        fh.flush()
    return fh


def _write_log(fh, log: EpisodeLog) -> None:
    csv.writer(fh).writerow([log.step, log.episode, f"{log.energy_j:.3f}", f"{log.overload_pod_s:.3f}",
                             f"{log.ret:.4f}", f"{log.epsilon:.4f}", f"{log.loss:.6g}", f"{log.wall_s:.2f}"])
    fh.flush()  # one row per episode, flushed: a crash loses nothing already logged


def config_help() -> dict[str, str]:
    """Each DQNConfig field's one-line docstring (the string under it in the class body)."""
    return field_docs(DQNConfig)


def check_config(cfg: DQNConfig) -> None:
    """Raise a one-line error naming the field when a hyperparameter is out of range or names no policy."""
    for name in (cfg.guide, cfg.demonstrator):
        if name:
            make_policy(name)  # PolicyError: unknown policy
    positive = ("learning_rate", "buffer_size", "batch_size", "n_step", "target_update_every", "train_every",
                "reward_scale", "hidden", "layers", "checkpoint_every")
    non_negative = ("total_steps", "demo_episodes", "pretrain_steps", "margin", "margin_weight", "learning_starts",
                    "max_grad_norm", "validation_episodes")
    fractions = ("gamma", "exploration_start", "exploration_end", "exploration_fraction", "demo_batch_fraction",
                 "validation_tolerance")
    for key in positive + non_negative + fractions:
        value = getattr(cfg, key)
        if (key in positive and not value > 0) or (key in non_negative and not value >= 0) \
                or (key in fractions and not 0 <= value <= 1):
            rule = "> 0" if key in positive else ">= 0" if key in non_negative else "between 0 and 1"
            raise ModelError(f"hyperparameter {key} = {value}: must be {rule}")
    if cfg.demonstrator and cfg.demo_episodes == 0:
        raise ModelError("hyperparameter demo_episodes = 0: a demonstrator needs at least one episode "
                         "(or set demonstrator to \"\")")


def apply_overrides(cfg: DQNConfig, pairs: list[str]) -> DQNConfig:
    """`KEY=VALUE` strings applied to a copy of `cfg`, typed like the field; ModelError on a bad one."""
    fields = {f.name: f for f in dataclasses.fields(DQNConfig)}
    values = dataclasses.asdict(cfg)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ModelError(f"--set {pair}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        kind = type(values[key])
        try:
            values[key] = kind(raw) if kind is not bool else raw.lower() in ("1", "true", "yes", "on")
        except ValueError:
            raise ModelError(f"--set {pair}: {key} takes a {kind.__name__}") from None
    return DQNConfig(**values)
