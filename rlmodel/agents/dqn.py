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

import dataclasses
import math
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rlmodel.agents.episode_log import EpisodeLog, open_sinks
from rlmodel.agents.features import NUM_FEATURES, node_features
from rlmodel.agents.model_file import load_model, model_data, read_training_state, save_model
from rlmodel.agents.policy import DQNPolicy
from rlmodel.agents.qnet import NodeScorer, masked_argmax
from rlmodel.envs.placement import PodPlacementEnv
from rlmodel.errors import ModelError
from rlmodel.evaluation.benchmark import run_episode
from rlmodel.fielddocs import field_docs
from rlmodel.overrides import CoercionError, coerce, split_pair
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
    attention: bool = False
    """add a cross-node attention pooling: each node's bid also sees a summary of every node (qnet.NodeScorer)"""
    overload_penalty_j_per_pod_s: float = -1.0
    """train and validate with this weight of overload, J per pod-s of slowdown, instead of the scenario's
    `[reward]` one (-1: the scenario's). A service-level choice made at training time: the model file keeps the
    scenario as given, and the benchmark reports energy and overload apart and ranks by the scenario's cost"""
    checkpoint_every: int = 5_000
    """steps between checkpoints of the model file; each checkpoint also validates the greedy policy"""
    validation_episodes: int = 20
    """episodes (fixed seeds, disjoint from training and benchmark seeds) that score each checkpoint; the
    model file's policy weights are those of the best-scoring checkpoint (0: always the latest)"""
    validation_scale: int = 1
    """also validate each checkpoint on the scenario scaled to this many times its nodes and pods (1: only as
    given); the score is then the mean cost as given plus the mean cost scaled, divided by this factor, so a
    checkpoint that is good on the training cluster but worse on a larger one is not chosen. The network scores
    clusters of any size, and this selects the checkpoint that does so best (the episodes are validation
    seeds at both sizes, never the benchmark's)"""
    validation_tolerance: float = 0.002
    """a checkpoint replaces the best one only when its validation cost is lower by more than this
    fraction: smaller differences are noise on 20 episodes, and the first checkpoint (after pretraining
    on demonstrations) is the demonstrator's policy, which a noisy win must not displace"""
    seed: int = 1
    """seed of networks, exploration and training traces"""
    device: str = "auto"
    """"auto" (CUDA when present, else CPU), "cpu" or "cuda" """


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
    """The torch device for "auto", "cpu", "cuda" or "cuda:N"; ModelError when it does not exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d{1,3}))?", name)
    if match is None:
        raise ModelError(f"hyperparameter device = {name!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ModelError(f"hyperparameter device = {name!r}: no CUDA device is available")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ModelError(f"hyperparameter device = {name!r}: this machine has {torch.cuda.device_count()} CUDA "
                         "devices")
    return torch.device(name)


def dqn_loss(q_net: NodeScorer, target_net: NodeScorer, batch: tuple[torch.Tensor, ...], *, gamma_n: float,
             n_demo: int = 0, margin: float = 0.0, margin_weight: float = 0.0) -> torch.Tensor:
    """The loss of one batch: Double-DQN TD error (Huber) on every row, plus DQfD's large-margin loss on the
    last `n_demo` rows (demonstrations).

    `batch`: (features (B, N, F), mask (B, N), action (B,), n-step reward (B,), next features, next mask,
    done (B,)). `gamma_n`: the discount of the bootstrap, gamma ** n_step. Pure: no optimizer, no state.
    """
    feats, mask, action, reward, next_feats, next_mask, done = batch
    with torch.no_grad():
        # Double DQN: the online net picks the next node among feasible ones, the target net values it
        next_action = masked_argmax(q_net(next_feats), next_mask)
        next_q = target_net(next_feats).gather(1, next_action[:, None]).squeeze(1)
        # a terminal next state has no feasible node and no future
        next_q = torch.where(done > 0, torch.zeros_like(next_q), next_q)
        td_target = reward + gamma_n * next_q
    q_all = q_net(feats)
    q_taken = q_all.gather(1, action[:, None]).squeeze(1)
    loss = F.smooth_l1_loss(q_taken, td_target)
    if n_demo:
        # large margin (DQfD): max over feasible a of Q(s, a) + margin [a != a_demo], minus Q(s, a_demo)
        first = q_all.shape[0] - n_demo
        q_d, a_d, m_d = q_all[first:], action[first:], mask[first:]
        bonus = margin * (1.0 - F.one_hot(a_d, q_d.shape[1]).to(q_d.dtype))
        best = torch.where(m_d, q_d + bonus, torch.finfo(q_d.dtype).min).max(dim=1).values
        loss = loss + margin_weight * (best - q_taken[first:]).mean()
    return loss


class RewardShaping:
    """The learning target's reward: the env's reward x `reward_scale`, plus (with `idle_baseline`) the
    nodes' idle power over the time to the next decision.

    Variance reduction: most of a step's energy is idle power times the (random) gap to the next arrival,
    which no placement changes. Adding it back on every step but the last shifts the return by (idle
    watts x last decision time), the same for every policy.
    """

    def __init__(self, cfg: DQNConfig, env: PodPlacementEnv, scenario: Scenario):
        self.scale = cfg.reward_scale
        self.baseline_kw = float(env.sim.idle_watts.sum()) / scenario.reward.energy_scale_j \
            if cfg.idle_baseline else 0.0

    def __call__(self, reward: float, terminated: bool, dt_s: float) -> float:
        return (reward if terminated else reward + self.baseline_kw * dt_s) * self.scale


def collect_demonstrations(cfg: DQNConfig, scenario: Scenario, num_nodes: int, shaped: RewardShaping,
                           rng: np.random.Generator) -> ReplayBuffer:
    """`cfg.demo_episodes` episodes of `cfg.demonstrator` in the twin (demonstrations cost no testbed
    time), as n-step transitions in a buffer of their own (DQfD)."""
    demonstrator = make_policy(cfg.demonstrator)
    demo_rb = ReplayBuffer(cfg.demo_episodes * scenario.workload.pods_per_episode, num_nodes, NUM_FEATURES, rng)
    demo_env = PodPlacementEnv(scenario)
    for i in range(cfg.demo_episodes):
        seed = DEMO_SEED_OFFSET + cfg.seed * 100_000 + i
        obs, info = demo_env.reset(seed=seed)
        demonstrator.reset(seed=seed)
        feats, mask, terminated = node_features(obs), info["action_mask"], False
        pending: list[tuple[np.ndarray, np.ndarray, int, float]] = []
        while not terminated:
            action, t_decision = demonstrator.predict(obs, mask), demo_env.sim.now_s
            obs, reward, terminated, _, info = demo_env.step(action)
            pending.append((feats, mask, action, shaped(reward, terminated, info["time_s"] - t_decision)))
            feats, mask = node_features(obs), info["action_mask"]
            demo_rb.add_n_step(pending, feats, mask, terminated, cfg.n_step, cfg.gamma)
    return demo_rb


class Learner:
    """The online and target networks and their optimizer: gradient steps and target copies."""

    def __init__(self, cfg: DQNConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.q_net = NodeScorer(NUM_FEATURES, cfg.hidden, cfg.layers, cfg.attention).to(device)
        self.target_net = NodeScorer(NUM_FEATURES, cfg.hidden, cfg.layers, cfg.attention).to(device)
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.learning_rate)
        self.steps = 0  # gradient steps taken

    def gradient_step(self, rb: ReplayBuffer | None, agent_batch: int, demo_rb: ReplayBuffer | None,
                      demo_batch: int) -> float:
        """One Adam step on `agent_batch` transitions of `rb` and `demo_batch` of `demo_rb`; the loss."""
        cfg = self.cfg
        parts = []
        if agent_batch:
            assert rb is not None
            parts.append(rb.sample(agent_batch, self.device))
        if demo_batch:
            assert demo_rb is not None, "demonstration batches need a demonstrator"
            parts.append(demo_rb.sample(demo_batch, self.device))
        batch = tuple(torch.cat(cols) for cols in zip(*parts, strict=True))
        loss = dqn_loss(self.q_net, self.target_net, batch, gamma_n=cfg.gamma**cfg.n_step, n_demo=demo_batch,
                        margin=cfg.margin, margin_weight=cfg.margin_weight)
        if not torch.isfinite(loss):
            # stop before the weights turn to NaN: the model file keeps the last (finite) checkpoint
            raise ModelError(f"training diverged: the loss became {loss.item()} after {self.steps} gradient steps "
                             f"(lower learning_rate = {cfg.learning_rate:g} or reward_scale = {cfg.reward_scale:g})")
        self.steps += 1
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.q_net.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        return float(loss.item())

    def update_target(self) -> None:
        self.target_net.load_state_dict(self.q_net.state_dict())

    def pretrain(self, demo_rb: ReplayBuffer) -> float:
        """`cfg.pretrain_steps` gradient steps on the demonstrations alone; the last loss."""
        loss = math.nan
        for k in range(self.cfg.pretrain_steps):
            loss = self.gradient_step(None, 0, demo_rb, self.cfg.batch_size)
            if (k + 1) % self.cfg.target_update_every == 0:
                self.update_target()
        self.update_target()
        return loss


def train(
    cfg: DQNConfig,
    scenario: Scenario,
    model_path: Path,
    *,
    resume: bool = False,
    log_dir: Path | None = None,
    on_episode: Callable[[EpisodeLog, int], None] | None = None,
    env: PodPlacementEnv | None = None,
) -> dict[str, Any]:
    """Train a DQN on `scenario` and write `model_path`; returns the model file's content.

    A checkpoint is written every `cfg.checkpoint_every` steps, at the end, and when interrupted
    (KeyboardInterrupt is re-raised after the checkpoint). Each scheduled checkpoint scores the greedy
    policy on `cfg.validation_episodes` fixed episodes; the file's `state_dict` (the policy) is the
    best so far, `last_state_dict` the latest weights. With `resume`, weights, optimizer, step
    and episode counters and random states continue from `model_path` (the replay buffer starts
    empty and refills before learning resumes). Every finished episode goes to the sinks of `log_dir`
    (`train.csv`, TensorBoard; `rlmodel.agents.episode_log`), then to `on_episode(log, step)`.
    `env`: the environment to train in (default: the twin of `scenario`; pass one with a
    `MinikubeCluster` to train on the testbed). Validation and demonstrations always run in the twin
    of `scenario`. With `cfg.demonstrator`, the first checkpoint (step 0, after pretraining) is
    validated like the others, so the model file is never worse on validation than the pretrained net.
    """
    check_config(cfg)
    if cfg.validation_scale > 1 and cfg.validation_episodes > 0 and scenario.workload.trace is not None:
        raise ModelError(f"hyperparameter validation_scale = {cfg.validation_scale}: scenario {scenario.name} replays "
                         "a trace, which cannot be scaled; use validation_scale = 1")
    if cfg.overload_penalty_j_per_pod_s >= 0:
        if env is not None:
            raise ModelError("hyperparameter overload_penalty_j_per_pod_s applies to training in the twin; on "
                             "another backend set the scenario's [reward] overload_penalty_j_per_pod_s instead")
        scenario = scenario.with_overload_weight(cfg.overload_penalty_j_per_pod_s)
    env = env if env is not None else PodPlacementEnv(scenario)
    check_memory(cfg, env.num_nodes, scenario.workload.pods_per_episode)
    device = resolve_device(cfg.device)
    # ---- seeding: one block for every source of randomness
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    guide = make_policy(cfg.guide) if cfg.guide else None
    shaped = RewardShaping(cfg, env, scenario)
    learner = Learner(cfg, device)
    q_net = learner.q_net
    start_step, episode = 0, 0
    best_state: dict[str, torch.Tensor] | None = None
    best_score = math.inf
    validation_env = PodPlacementEnv(scenario)
    validation_big = PodPlacementEnv(scenario.scaled(cfg.validation_scale)) if cfg.validation_scale > 1 else None
    if resume:
        model = load_model(model_path, device=str(device))
        loaded, shape = model.data, model.network_shape
        if shape != (cfg.hidden, cfg.layers) or model.network.attention != cfg.attention:
            raise ModelError(f"{model_path}: trained with hidden = {shape[0]}, layers = {shape[1]}, attention = "
                             f"{model.network.attention}; --resume cannot continue it with hidden = {cfg.hidden}, "
                             f"layers = {cfg.layers}, attention = {cfg.attention}")
        prev = read_training_state(loaded, model_path, env.num_nodes)
        part = "weights"
        try:
            q_net.load_state_dict(prev.last_state_dict)
            learner.target_net.load_state_dict(prev.target_state_dict)
            best_state, best_score = prev.best_state_dict, prev.best_score
            part = "optimizer state"
            if prev.optimizer is not None:
                learner.optimizer.load_state_dict(prev.optimizer)
            start_step, episode = prev.global_step, prev.episodes
            part = "random-generator states"
            if prev.rng is not None:
                rng.bit_generator.state = prev.rng["numpy"]
                torch.set_rng_state(prev.rng["torch"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise ModelError(f"{model_path}: cannot resume from its {part}: {first}") from None
    rb = ReplayBuffer(cfg.buffer_size, env.num_nodes, NUM_FEATURES, rng)
    learning_starts = cfg.learning_starts if not resume else start_step + max(cfg.batch_size, cfg.learning_starts // 4)
    recent: list[EpisodeLog] = []
    sinks = open_sinks(log_dir, append=resume)
    started = time.perf_counter()
    loss_value = math.nan

    def validate() -> float:
        """Mean cost (kJ, energy plus penalties) of the greedy policy on the validation episodes."""
        greedy = DQNPolicy(q_net, device=str(device))  # the same policy the benchmark runs

        def mean_cost(env: PodPlacementEnv) -> float:
            return float(np.mean([-run_episode(env, greedy, VALIDATION_SEED_OFFSET + i).ret
                                  for i in range(cfg.validation_episodes)]))

        # scaled: per unit of scale, so both sizes weigh alike
        return mean_cost(validation_env) + (mean_cost(validation_big) / cfg.validation_scale
                                            if validation_big is not None else 0.0)

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
        data = model_data(
            hyperparameters=dataclasses.asdict(cfg), scenario=scenario, num_nodes=env.num_nodes,
            global_step=step, episodes=episode, recent=recent[-20:], train_wall_s=time.perf_counter() - started,
            validation_cost_kj=best_score, validation_cost_kj_latest=score, state_dict=best_state,
            last_state_dict=current, target_state_dict=learner.target_net.state_dict(),
            optimizer=learner.optimizer.state_dict(), rng=rng)
        save_model(model_path, data)
        return data

    step = start_step
    try:  # Ctrl-C anywhere below writes a checkpoint first
        # ---- demonstrations (DQfD): the demonstrator's episodes, then pretraining on them alone
        demo_rb: ReplayBuffer | None = None
        n_demo = 0
        if cfg.demonstrator:
            demo_rb = collect_demonstrations(cfg, scenario, env.num_nodes, shaped, rng)
            n_demo = max(1, round(cfg.batch_size * cfg.demo_batch_fraction))
            if not resume:
                loss_value = learner.pretrain(demo_rb)
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
            feats, mask, obs = next_feats, next_mask, next_obs  # the next state is where we act from

            if terminated or truncated:
                episode += 1
                m = env.episode_metrics()
                log = EpisodeLog(step + 1, episode, m["energy_j"], m["overload_pod_s"], ep_return, epsilon,
                                 loss_value, time.perf_counter() - started)
                recent.append(log)
                for sink in sinks:
                    sink.write(log)
                if on_episode:
                    on_episode(log, step + 1)
                obs, info = env.reset(seed=TRAIN_SEED_OFFSET + cfg.seed * 100_000 + episode)
                if guide is not None:
                    guide.reset(seed=cfg.seed + episode)
                feats, mask = node_features(obs), info["action_mask"]
                ep_return = 0.0

            # ---- learn
            if step >= learning_starts and step % cfg.train_every == 0 and rb.size >= cfg.batch_size:
                loss_value = learner.gradient_step(rb, cfg.batch_size - n_demo, demo_rb, n_demo)

            if (step + 1) % cfg.target_update_every == 0:
                learner.update_target()
            if (step + 1) % cfg.checkpoint_every == 0:
                checkpoint(step + 1, validate_now=step + 1 >= learning_starts)
    except KeyboardInterrupt:
        checkpoint(step, validate_now=False)
        raise
    finally:
        for sink in sinks:
            sink.close()
    return checkpoint(cfg.total_steps, validate_now=cfg.total_steps % cfg.checkpoint_every != 0)


def config_for_resume(model_path: Path, steps: int | None) -> tuple[DQNConfig, str, int]:
    """(hyperparameters stored in `model_path` with `total_steps` = `steps` when given, the training scenario's
    source, the steps already trained), to continue with `train(..., resume=True)`. ModelError when the model
    has already trained for the requested steps."""
    stored = load_model(model_path)
    defaults = DQNConfig()
    values = {}
    for f in dataclasses.fields(DQNConfig):
        if f.name in stored.hyperparameters:
            try:  # typed like the field, as from a config file: a damaged value is one line, not a crash later
                values[f.name] = coerce(getattr(defaults, f.name), stored.hyperparameters[f.name], from_text=False)
            except CoercionError as exc:
                raise ModelError(f"{model_path}: stored hyperparameter {f.name}: {exc}") from None
    cfg = dataclasses.replace(defaults, **values)
    if steps is not None:
        cfg.total_steps = steps
    done = stored.global_step
    if cfg.total_steps <= done:
        raise ModelError(f"{model_path}: already trained for {done} steps; pass --steps above that to continue")
    return cfg, stored.scenario_source, done


def config_help() -> dict[str, str]:
    """Each DQNConfig field's one-line docstring (the string under it in the class body)."""
    return field_docs(DQNConfig)


def check_config(cfg: DQNConfig) -> None:
    """Raise a one-line error naming the field when a hyperparameter is out of range or names no policy."""
    for name in (cfg.guide, cfg.demonstrator):
        if name:
            make_policy(name)  # PolicyError: unknown policy
    positive = ("learning_rate", "buffer_size", "batch_size", "n_step", "target_update_every", "train_every",
                "reward_scale", "hidden", "layers", "checkpoint_every", "validation_scale")
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
    for key, high in _UPPER_BOUNDS.items():
        value = getattr(cfg, key)
        if value > high:
            raise ModelError(f"hyperparameter {key} = {value}: must be at most {high:g}")
    penalty = cfg.overload_penalty_j_per_pod_s
    if not (penalty == -1 or 0 <= penalty <= 1e9):
        raise ModelError(f"hyperparameter overload_penalty_j_per_pod_s = {penalty}: must be -1 (the scenario's) "
                         "or between 0 and 1e9")
    if not 0 <= cfg.seed < 2**31:
        raise ModelError(f"hyperparameter seed = {cfg.seed}: must be between 0 and {2**31 - 1}")
    if cfg.demonstrator and cfg.demo_episodes == 0:
        raise ModelError("hyperparameter demo_episodes = 0: a demonstrator needs at least one episode "
                         "(or set demonstrator to \"\")")
    resolve_device(cfg.device)


# far above any useful value; they keep an accidental 1e11 from allocating (or looping) before failing
_UPPER_BOUNDS = {"total_steps": 10**9, "buffer_size": 10**8, "batch_size": 65_536, "n_step": 1_000,
                 "target_update_every": 10**9, "demo_episodes": 10**6, "pretrain_steps": 10**8,
                 "learning_starts": 10**9, "train_every": 10**6, "hidden": 65_536, "layers": 64,
                 "checkpoint_every": 10**9, "validation_episodes": 100_000, "validation_scale": 64,
                 "learning_rate": 10.0,
                 "reward_scale": 1e6, "margin": 1e6, "margin_weight": 1e6, "max_grad_norm": 1e9}
MEMORY_SHARE = 0.5  # training may plan to use at most this share of the machine's memory


def planned_memory_bytes(cfg: DQNConfig, num_nodes: int, pods_per_episode: int) -> int:
    """Bytes the replay buffers and networks will take (the buffers are allocated up front)."""
    per_transition = num_nodes * (2 * NUM_FEATURES * 4 + 2) + 8 + 4 + 4  # features, next, masks, action, reward, done
    transitions = cfg.buffer_size + (cfg.demo_episodes * pods_per_episode if cfg.demonstrator else 0)
    h, layers = cfg.hidden, cfg.layers
    params = NUM_FEATURES * h + max(layers - 1, 0) * h * h + (layers + 1) * h + 1
    return transitions * per_transition + params * 4 * 6  # online, target, gradients, Adam's two moments, copy


def check_memory(cfg: DQNConfig, num_nodes: int, pods_per_episode: int) -> None:
    """ModelError when training would plan to use more than MEMORY_SHARE of this machine's memory."""
    need = planned_memory_bytes(cfg, num_nodes, pods_per_episode)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return
    if need > MEMORY_SHARE * total:
        raise ModelError(f"hyperparameters buffer_size = {cfg.buffer_size}, demo_episodes = {cfg.demo_episodes}, "
                         f"hidden = {cfg.hidden}: the replay buffers and network would need {need / 2**30:.1f} GiB on "
                         f"{num_nodes} nodes, more than half of this machine's {total / 2**30:.1f} GiB")


def apply_overrides(cfg: DQNConfig, pairs: list[str]) -> DQNConfig:
    """`KEY=VALUE` strings applied to a copy of `cfg`, typed like the field (`rlmodel.overrides.coerce`);
    ModelError naming the pair on a bad one."""
    fields = {f.name for f in dataclasses.fields(DQNConfig)}
    values: dict[str, Any] = {}
    for pair in pairs:
        try:
            key, raw = split_pair(pair)
            if key not in fields:
                raise CoercionError(f"expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}")
            values[key] = coerce(getattr(cfg, key), raw, from_text=True)
        except CoercionError as exc:
            raise ModelError(f"--set {pair}: {exc}") from None
    return dataclasses.replace(cfg, **values)
