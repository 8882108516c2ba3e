"""The cluster interface and the one observation builder: any ClusterState gives the env's observation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlmodel.agents.features import FEATURES, feature_columns, node_features
from rlmodel.envs import PodPlacementEnv
from rlmodel.envs.observation import IDLE_S_MAX, NODE_COL, NODE_FEATURES, POD_COL, ObservationBuilder
from rlmodel.overrides import CoercionError, coerce, split_pair
from rlmodel.sim.backend import ASLEEP, AWAKE, WAKING, ClusterState, fits_mask
from rlmodel.sim.power import BUILTIN_NODE_TYPES, PowerCurves, power_w


@dataclass
class HandState:
    """A cluster state written by hand, as a live cluster view would hold it (implements ClusterState)."""

    names: list[str]
    cores: np.ndarray
    memory_gib: np.ndarray
    curves: np.ndarray
    cpu_requested: list[float]
    mem_requested: list[float]
    demand: list[float]
    watts: list[float]
    pods_on: list[int]
    state: list[int]
    empty_since: list[float]
    wake_done: list[float]
    now_s: float = 1000.0
    wake_s: float = 30.0
    sleep_after_s: float = 120.0
    idle_watts: np.ndarray = field(init=False)
    peak_watts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.idle_watts, self.peak_watts = self.curves[:, 0], self.curves[:, -1]

    @property
    def num_nodes(self) -> int:
        return len(self.names)

    def fits(self, cpu_request: float, memory_request: float) -> np.ndarray:
        return fits_mask(self, cpu_request, memory_request)

    def power_w(self, demand_cores: np.ndarray) -> np.ndarray:
        return power_w(self.curves, demand_cores / self.cores)


def _hand_state() -> HandState:
    x, g5 = BUILTIN_NODE_TYPES["x3550"], BUILTIN_NODE_TYPES["ml110-g5"]
    return HandState(
        names=["big", "small", "sleepy"], cores=np.array([12.0, 2.0, 2.0]), memory_gib=np.array([12.0, 4.0, 4.0]),
        curves=np.array([x.watts, g5.watts, g5.watts]), cpu_requested=[6.0, 0.0, 0.0],
        mem_requested=[3.0, 0.0, 0.0], demand=[4.5, 0.0, 0.0], watts=[150.0, 93.7, 8.0], pods_on=[3, 0, 0],
        state=[AWAKE, AWAKE, ASLEEP], empty_since=[0.0, 940.0, 0.0], wake_done=[math.inf] * 3)


def test_builder_on_a_hand_written_state():
    state: ClusterState = _hand_state()
    mask = state.fits(1.0, 0.5)
    obs = ObservationBuilder(state).build(state, (1.0, 0.5, 0.25), mask)
    n, pod = obs["nodes"], obs["pod"]
    assert n.shape == (3, len(NODE_FEATURES)) and n.dtype == np.float32
    col = {name: n[:, i] for i, name in enumerate(NODE_FEATURES)}
    assert list(col["cpu_cores"]) == [12, 2, 2] and list(col["cpu_requested_cores"]) == [6, 0, 0]
    assert list(col["pods"]) == [3, 0, 0] and list(col["asleep"]) == [0, 0, 1] and list(col["fits"]) == [1, 1, 1]
    # the awake empty node has idled 60 s; the others 0 (busy, asleep)
    assert list(col["idle_s"]) == [0, 60, 0]
    # after placement: an awake node runs its demand plus the request, a sleeping one its requests plus it
    g5 = BUILTIN_NODE_TYPES["ml110-g5"]
    assert col["watts_if_placed"][0] == pytest.approx(BUILTIN_NODE_TYPES["x3550"].power_w(5.5 / 12))
    assert col["watts_if_placed"][1] == pytest.approx(g5.power_w(0.5))
    assert col["watts_if_placed"][2] == pytest.approx(g5.power_w(0.5))
    assert list(col["sleep_after_s"]) == [120] * 3
    assert col["idle_watts"] == pytest.approx([BUILTIN_NODE_TYPES["x3550"].idle_watts, g5.idle_watts, g5.idle_watts])
    assert pod[POD_COL["cpu_request_cores"]] == 1.0 and pod[POD_COL["episode_progress"]] == 0.25


def test_waking_nodes_show_the_time_left():
    state = _hand_state()
    state.state[2], state.wake_done[2] = WAKING, 1012.5
    obs = ObservationBuilder(state).build(state, None, np.ones(3, dtype=bool))
    assert list(obs["nodes"][:, NODE_COL["waking_s"]]) == [0, 0, 12.5]
    assert not obs["pod"].any()  # after the last pod


def test_the_env_observation_is_the_builders():
    env = PodPlacementEnv("hetero-sleep")
    obs, info = env.reset(seed=3)
    builder = ObservationBuilder(env.sim)
    for _ in range(25):
        i, trace = env.pod_index, env.trace
        again = builder.build(env.sim, (float(trace.cpu_request_cores[i]), float(trace.memory_request_gib[i]),
                                        i / len(trace)), info["action_mask"], env.pod_signals(i))
        assert np.array_equal(again["nodes"], obs["nodes"]) and np.array_equal(again["pod"], obs["pod"])
        assert env.observation_space.contains(obs)
        obs, _, done, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
        if done:
            break
    assert (obs["nodes"][:, NODE_COL["idle_s"]] <= IDLE_S_MAX).all()


def test_every_dqn_feature_is_computed_once_by_name():
    env = PodPlacementEnv("hetero-sleep")
    obs, _ = env.reset(seed=1)
    columns = feature_columns(obs)
    assert set(columns) == set(FEATURES) and len(columns) == len(FEATURES)
    feats = node_features(obs)
    for i, name in enumerate(FEATURES):
        assert np.array_equal(feats[:, i], np.broadcast_to(np.asarray(columns[name], dtype=np.float32), (10,)))


def test_one_power_interpolation():
    curves = np.array([BUILTIN_NODE_TYPES["x3550"].watts, BUILTIN_NODE_TYPES["ml110-g4"].watts])
    u = np.array([0.437, 1.7])
    # hand-computed: 43.7 % lies 0.37 of the way from 40 % to 50 %; above 100 % the peak
    x = BUILTIN_NODE_TYPES["x3550"].watts
    expected = [x[4] + 0.37 * (x[5] - x[4]), BUILTIN_NODE_TYPES["ml110-g4"].watts[-1]]
    assert power_w(curves, u) == pytest.approx(expected)
    assert np.array_equal(PowerCurves(curves).at_utilization(u), power_w(curves, u))
    with pytest.raises(ValueError, match="shape"):
        PowerCurves(np.zeros((2, 5)))


@given(st.sampled_from([True, 1, 2.5, "x"]), st.text(max_size=20))
def test_coercion_from_text_returns_the_type_or_refuses(current, text):
    try:
        out = coerce(current, text, from_text=True)
    except CoercionError as exc:
        assert str(exc).startswith("expected ")
        return
    assert type(out) is type(current)
    if isinstance(out, float):
        assert math.isfinite(out)
    if isinstance(current, bool):  # never a silent False for a typo
        assert text.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off")


@given(st.sampled_from([True, 1, 2.5, "x"]), st.one_of(st.booleans(), st.integers(), st.floats(), st.text(),
                                                      st.none(), st.lists(st.integers(), max_size=2)))
def test_coercion_from_toml_is_strict(current, value):
    try:
        out = coerce(current, value, from_text=False)
    except CoercionError:
        return
    assert type(out) is type(current)
    if isinstance(current, (bool, str)):
        assert out == value


def test_split_pair():
    assert split_pair(" learning-rate =0.1") == ("learning_rate", "0.1")
    for bad in ("novalue", "=3", ""):
        with pytest.raises(CoercionError):
            split_pair(bad)
