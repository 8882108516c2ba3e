"""The DQN: determinism, masking, model files, resume, interruption, and the CLI on a tiny budget."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rlmodel.agents.dqn import DQNConfig, train
from rlmodel.agents.features import NUM_FEATURES, node_features
from rlmodel.agents.model_file import ModelError, load_model, save_model
from rlmodel.agents.policy import DQNPolicy
from rlmodel.agents.qnet import NodeScorer
from rlmodel.cli import main
from rlmodel.envs import PodPlacementEnv
from rlmodel.evaluation.benchmark import run_episode
from rlmodel.policies import make_policy
from rlmodel.sim import load_scenario

SMALL = dict(total_steps=600, learning_starts=100, buffer_size=1000, batch_size=16, hidden=32,
             target_update_every=100, checkpoint_every=400, demo_episodes=4, pretrain_steps=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("m") / "m.pth"
    train(DQNConfig(seed=3, **SMALL), load_scenario("tiny"), path)
    return path


def test_same_seed_same_actions(tmp_path, trained):
    again = tmp_path / "again.pth"
    train(DQNConfig(seed=3, **SMALL), load_scenario("tiny"), again)
    a, b = load_model(trained), load_model(again)
    for k, v in a.data["state_dict"].items():
        assert torch.equal(v, b.data["state_dict"][k])
    env = PodPlacementEnv("hetero-sleep")
    ra = run_episode(env, DQNPolicy(a.network), seed=5)
    rb = run_episode(env, DQNPolicy(b.network), seed=5)
    assert ra.actions == rb.actions and ra.energy_j == rb.energy_j
    other = tmp_path / "other.pth"
    train(DQNConfig(seed=4, **SMALL), load_scenario("tiny"), other)
    assert not torch.equal(load_model(other).data["state_dict"]["mlp.0.weight"], a.data["state_dict"]["mlp.0.weight"])


def test_masking_never_picks_an_infeasible_node(trained):
    policy = DQNPolicy.load(trained)
    env = PodPlacementEnv(load_scenario("hetero").scaled(3))
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = rng.random(env.num_nodes) < 0.2
        mask[rng.integers(env.num_nodes)] = True
        q = policy.scores(obs, mask)
        # even when an infeasible node has the best bid, it is not chosen
        a = policy.predict(obs, mask)
        assert mask[a] and q[a] == q[mask].max()


def test_model_file_contents(trained):
    data = load_model(trained).data
    assert data["format"] == "rlsched-dqn" and data["format_version"] == 1
    assert len(data["feature_schema"]["features"]) == NUM_FEATURES
    assert data["hyperparameters"]["total_steps"] == 600 and data["seed"] == 3
    assert data["scenario"]["name"] == "tiny" and data["global_step"] == 600
    assert np.isfinite(data["metrics"]["energy_j_mean"])


def test_resume_continues_counters_and_optimizer(tmp_path, trained):
    path = tmp_path / "r.pth"
    path.write_bytes(trained.read_bytes())
    before = load_model(path).data
    cfg = DQNConfig(seed=3, **{**SMALL, "total_steps": 900})
    after = train(cfg, load_scenario("tiny"), path, resume=True)
    assert after["global_step"] == 900 and after["episodes"] > before["episodes"]
    assert after["optimizer"]["state"][0]["step"] > before["optimizer"]["state"][0]["step"]
    # training went on from the latest weights (the policy weights are the best validated checkpoint)
    assert not torch.equal(after["last_state_dict"]["mlp.0.weight"], before["last_state_dict"]["mlp.0.weight"])
    assert after["metrics"]["validation_cost_kj"] <= before["metrics"]["validation_cost_kj"]


def test_interrupt_writes_a_checkpoint(tmp_path):
    path = tmp_path / "i.pth"

    def stop(log, step):
        if log.episode == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(DQNConfig(seed=1, **{**SMALL, "total_steps": 5000}), load_scenario("tiny"), path, on_episode=stop)
    data = load_model(path).data
    assert 0 < data["global_step"] < 5000 and data["episodes"] == 30


def test_interrupt_while_collecting_demonstrations_writes_a_checkpoint(tmp_path, monkeypatch):
    import rlmodel.agents.dqn as dqn

    calls = 0

    def interrupted(obs):
        nonlocal calls
        calls += 1
        if calls == 20:  # the 4 demonstration episodes of `tiny` take about 36 observations
            raise KeyboardInterrupt
        return node_features(obs)

    monkeypatch.setattr(dqn, "node_features", interrupted)
    path = tmp_path / "d.pth"
    with pytest.raises(KeyboardInterrupt):
        train(DQNConfig(seed=1, **SMALL), load_scenario("tiny"), path)
    data = load_model(path).data
    assert data["global_step"] == 0 and data["episodes"] == 0


def test_bad_model_files_are_refused(tmp_path, trained):
    with pytest.raises(ModelError, match="no such model file"):
        load_model(tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(trained.read_bytes()[:300])
    with pytest.raises(ModelError, match="corrupt"):
        load_model(corrupt)
    text = tmp_path / "text.pth"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not a readable rlsched model"):
        load_model(text)
    data = load_model(trained).data
    schema = dict(data, feature_schema={"version": 99, "features": ["a", "b"]})
    save_model(tmp_path / "schema.pth", schema)
    with pytest.raises(ModelError, match="feature schema v99"):
        load_model(tmp_path / "schema.pth")
    shape = dict(data, network={"hidden": 64, "layers": 2})
    save_model(tmp_path / "shape.pth", shape)
    with pytest.raises(ModelError, match="do not match"):
        load_model(tmp_path / "shape.pth")
    torch.save({"state_dict": NodeScorer(NUM_FEATURES).state_dict()}, tmp_path / "bare.pth")
    with pytest.raises(ModelError, match="not an rlsched DQN model"):
        load_model(tmp_path / "bare.pth")


def test_features_are_scale_free():
    env = PodPlacementEnv("hetero")
    big = PodPlacementEnv(load_scenario("hetero").scaled(4))
    f_small = node_features(env.reset(seed=0)[0])
    f_big = node_features(big.reset(seed=0)[0])
    assert f_small.shape == (10, NUM_FEATURES) and f_big.shape == (40, NUM_FEATURES)
    # an empty cluster looks the same per node type at any size (pod-independent columns)
    cols = [0, 1, 2, 3, 4, 7, 9, 10, 11, 12, 13, 14, 15, 20, 21, 22, 23]
    assert np.allclose(f_small[0, cols], f_big[0, cols]) and np.allclose(f_small[-1, cols], f_big[-1, cols])


def test_cli_train_test_benchmark_end_to_end(tmp_path):
    runner = CliRunner()
    model = tmp_path / "Dale.pth"
    r = runner.invoke(main, ["train", "--model", str(model), "--scenario", "tiny", "--steps", "400", "--seed", "2",
                             "--log-dir", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert model.exists() and "trained 400 steps" in r.output
    log = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert log[0].startswith("step,episode,energy_j") and len(log) > 10
    r = runner.invoke(main, ["train", "--model", str(model), "--resume", "--steps", "500",
                             "--log-dir", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert load_model(model).data["global_step"] == 500
    r = runner.invoke(main, ["test", "--model", str(model), "--episodes", "1"])
    assert r.exit_code == 0, r.output
    assert "-> node" in r.output and "bids" in r.output and "energy" in r.output
    r = runner.invoke(main, ["benchmark", "--model", str(model), "--scenario", "tiny", "--episodes", "2",
                             "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert re.search(r"\n *\d+ dqn ", r.output)
    r = runner.invoke(main, ["test", "--model", str(tmp_path / "nope.pth")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "no such model file" in r.output
    r = runner.invoke(main, ["benchmark", "--policies", "dqn"])
    assert r.exit_code == 2 and "--model" in r.output


def test_cli_hyperparameters_and_overrides(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--hyperparameters"])
    assert r.exit_code == 0 and "learning_rate" in r.output and "Adam learning rate" in r.output
    model = tmp_path / "m.pth"
    r = runner.invoke(main, ["train", "--model", str(model), "--scenario", "tiny", "--steps", "300",
                             "--set", "hidden=16", "--set", "n_step=3", "--set", "guide=efficient-first",
                             "--set", "learning_starts=50", "--log-dir", str(tmp_path / "l")])
    assert r.exit_code == 0, r.output
    hp = load_model(model).data["hyperparameters"]
    assert (hp["hidden"], hp["n_step"], hp["guide"]) == (16, 3, "efficient-first")
    for bad, msg in (["--set", "hidden=wide"], "hidden=wide: expected a whole number"), \
            (["--set", "nope=1"], "KEY one of"), \
            (["--set", "idle_baseline=flase"], "idle_baseline=flase: expected true or false"), \
            (["--set", "learning_rate=inf"], "learning_rate=inf: expected a finite number"), \
            (["--set", "guide=fastest"], "unknown policy"), (["--set", "demonstrator=fastest"], "unknown policy"), \
            (["--set", "demo_batch_fraction=1.5"], "demo_batch_fraction = 1.5: must be between 0 and 1"), \
            (["--set", "batch_size=0"], "batch_size = 0: must be > 0"):
        r = runner.invoke(main, ["train", "--model", str(model), "--force", "--scenario", "tiny", "--steps", "10", *bad,
                                 "--log-dir", str(tmp_path / "bad")])
        assert r.exit_code == 1 and msg in r.output and r.output.count("\n") == 1, r.output


def test_fill_gap_feature_compares_nodes_of_the_same_type():
    from rlmodel.agents.features import FEATURES
    from rlmodel.envs import NODE_FEATURES
    from rlmodel.envs.observation import NODE_COL as col
    nodes = np.zeros((4, len(NODE_FEATURES)), dtype=np.float32)
    nodes[:, col["cpu_cores"]] = [12, 12, 12, 2]
    nodes[:, col["memory_gib"]] = 12
    nodes[:, col["peak_watts"]] = [247, 247, 247, 117]
    nodes[:, col["idle_watts"]] = [66, 66, 66, 86]
    nodes[:, col["cpu_requested_cores"]] = [6, 9, 11, 1]
    nodes[:, col["fits"]] = [1, 1, 0, 1]  # the fullest x3550 cannot take the pod: it is not a candidate
    from rlmodel.envs import POD_FEATURES

    pod = np.zeros(len(POD_FEATURES), dtype=np.float32)
    pod[:2] = 0.5
    obs = {"nodes": nodes, "pod": pod}
    gap = node_features(obs)[:, FEATURES.index("fill_gap_same_type")]
    assert np.allclose(gap, [6 / 12 - 9 / 12, 0.0, 11 / 12 - 9 / 12, 0.0])
    # the type groups are kept for the last node set: another set, then this one again, gives the same answers
    other = nodes.copy()
    other[:, col["peak_watts"]] = [247, 117, 247, 117]  # n1 and n3 now of one type, n0 and n2 of the other
    other[:, col["cpu_cores"]] = [12, 2, 12, 2]
    other[:, col["idle_watts"]] = [66, 86, 66, 86]
    gap_other = node_features({"nodes": other, "pod": pod})[:, FEATURES.index("fill_gap_same_type")]
    assert np.allclose(gap_other, [0.0, 0.0, 11 / 12 - 6 / 12, 1 / 2 - 9 / 2])
    assert np.array_equal(node_features(obs)[:, FEATURES.index("fill_gap_same_type")], gap)


def test_efficient_first_pick_feature_marks_the_heuristics_choice():
    from rlmodel.agents.features import FEATURES
    from rlmodel.policies import make_policy

    env = PodPlacementEnv("hetero-sleep")
    heuristic = make_policy("efficient-first")
    obs, info = env.reset(seed=7)
    checked = ties = 0
    for _ in range(40):
        pick = node_features(obs)[:, FEATURES.index("efficient_first_pick")] > 0
        mask = info["action_mask"]
        heuristic.reset(seed=checked)
        choice = heuristic.predict(obs, mask)
        # the heuristic breaks ties at random: the feature marks every node it might choose, and only those
        scores = np.where(mask, heuristic.scores(obs, mask), -np.inf)
        assert pick[choice] and np.array_equal(pick, scores == scores.max())
        ties += pick.sum() > 1
        obs, _, done, _, info = env.step(choice)
        checked += 1
        if done:
            break
    assert checked >= 30 and ties > 0


def test_demonstrations_pretrain_the_network_to_follow_the_demonstrator(tmp_path):
    """DQfD: after pretraining on efficient-first's episodes (and nothing else), the greedy policy makes
    the demonstrator's choices on held-out episodes; without demonstrations, the same budget does not."""
    from rlmodel.evaluation.benchmark import agreement
    from rlmodel.policies import make_policy

    def agreement_with_efficient_first(path: Path) -> float:
        return agreement(PodPlacementEnv("hetero-sleep"), DQNPolicy.load(path), make_policy("efficient-first"),
                         (11, 12))

    common = dict(SMALL, total_steps=0, checkpoint_every=1000, validation_episodes=0, demo_episodes=10,
                  pretrain_steps=400)
    demo = tmp_path / "demo.pth"
    data = train(DQNConfig(seed=1, demonstrator="efficient-first", **common), load_scenario("hetero-sleep"), demo)
    assert data["hyperparameters"]["demonstrator"] == "efficient-first"
    plain = tmp_path / "plain.pth"
    train(DQNConfig(seed=1, demonstrator="", **common), load_scenario("hetero-sleep"), plain)
    assert agreement_with_efficient_first(demo) >= 0.9
    assert agreement_with_efficient_first(plain) < 0.7


def test_dqn_loss_on_a_hand_computed_batch():
    """Linear scorers Q(x) = w x (online w=1, target w=2), one feature, two nodes, gamma^n = 0.5."""
    from rlmodel.agents.dqn import dqn_loss

    q_net, target_net = NodeScorer(1, layers=0), NodeScorer(1, layers=0)
    with torch.no_grad():
        for net, w in ((q_net, 1.0), (target_net, 2.0)):
            net.mlp[0].weight.fill_(w)
            net.mlp[0].bias.zero_()
    t = torch.tensor
    batch = (
        t([[[1.0], [3.0]], [[4.0], [2.0]]]),  # features (B=2, N=2, F=1): Q = [1, 3] and [4, 2]
        t([[True, True], [True, True]]),
        t([0, 1]),  # actions: Q taken 1 and 2
        t([1.0, 0.5]),  # n-step rewards
        t([[[2.0], [5.0]], [[1.0], [1.0]]]),  # next features
        t([[True, False], [True, True]]),  # node 1 infeasible next: Double DQN picks node 0, target values it 4
        t([0.0, 1.0]),  # the second transition ends the episode: no bootstrap
    )
    # TD targets 1 + 0.5 * 4 = 3 and 0.5; errors -2 and 1.5; Huber 1.5 and 1.0; mean 1.25
    assert dqn_loss(q_net, target_net, batch, gamma_n=0.5).item() == pytest.approx(1.25)
    # the second row is a demonstration of node 1: max(4 + 0.3, 2) - 2 = 2.3, weighted x2
    loss = dqn_loss(q_net, target_net, batch, gamma_n=0.5, n_demo=1, margin=0.3, margin_weight=2.0)
    assert loss.item() == pytest.approx(1.25 + 4.6)
    loss.backward()
    assert q_net.mlp[0].weight.grad is not None and target_net.mlp[0].weight.grad is None


def _mutations():
    import math as m

    def drop(key):
        return lambda d: d.pop(key)

    def put(key, value):
        return lambda d: d.__setitem__(key, value)

    return {
        "feature_schema as a list": put("feature_schema", ["x"]),
        "no scenario": drop("scenario"),
        "scenario as text": put("scenario", "tiny"),
        "no global_step": drop("global_step"),
        "global_step as text": put("global_step", "600"),
        "negative episodes": put("episodes", -1),
        "no metrics": drop("metrics"),
        "metrics with text": put("metrics", {"energy_j_mean": "lots"}),
        "optimizer as a list": put("optimizer", [1, 2]),
        "optimizer without groups": put("optimizer", {"state": {}}),
        "rng as text": put("rng", "seeded"),
        "rng without torch state": lambda d: d["rng"].pop("torch"),
        "network hidden as text": lambda d: d["network"].__setitem__("hidden", "wide"),
        "network of 10^9": lambda d: d["network"].__setitem__("hidden", 10**9),
        "weights as a list": put("state_dict", [1, 2]),
        "NaN weights": lambda d: d["state_dict"]["mlp.0.weight"].fill_(m.nan),
        "wrong optimizer shape": lambda d: d["optimizer"]["param_groups"][0].__setitem__("params", [0]),
        "hyperparameters as a list": put("hyperparameters", [1]),
        "a hyperparameter of the wrong type": lambda d: d["hyperparameters"].__setitem__("hidden", "wide"),
    }


@pytest.mark.parametrize("case", list(_mutations()))
def test_malformed_model_files_are_one_line(tmp_path, trained, case):
    data = torch.load(trained, weights_only=True)
    _mutations()[case](data)
    path = tmp_path / "bad.pth"
    torch.save(data, path)
    before = path.read_bytes()
    runner = CliRunner()
    commands = [["test", "--model", str(path), "--scenario", "tiny"],
                ["train", "--model", str(path), "--resume", "--steps", "700", "--log-dir", str(tmp_path / "log")],
                ["benchmark", "-s", "tiny", "-n", "1", "--model", str(path), "--out", str(tmp_path / "b")]]
    refused = 0
    for args in commands:
        r = runner.invoke(main, args)
        assert r.exit_code in (0, 1), (case, args, r.output)
        if r.exit_code == 1:
            refused += 1
            assert r.output.count("\n") == 1 and str(path) in r.output and "Traceback" not in r.output, r.output
            assert "file an issue" not in r.output
    assert refused >= 1, case  # every damaged file is refused by what reads the damaged field
    assert path.read_bytes() == before  # never rewritten
    assert not (tmp_path / "log").exists()  # no log folder left by a refused start


def test_resume_with_another_network_shape_is_refused(tmp_path, trained):
    path = tmp_path / "r.pth"
    path.write_bytes(trained.read_bytes())
    r = CliRunner().invoke(main, ["train", "--model", str(path), "--resume", "--steps", "700", "--set", "hidden=16",
                                  "--log-dir", str(tmp_path / "log")])
    assert r.exit_code == 1 and "trained with hidden = 32" in r.output and r.output.count("\n") == 1


@pytest.mark.parametrize("override,message", [
    ("device=tpu", "expected auto, cpu, cuda or cuda:N"), ("device=cuda:5", "no CUDA device"),
    ("seed=-5", "seed = -5"), ("buffer_size=1e11", "expected a whole number"),
    ("buffer_size=100000000000", "buffer_size = 100000000000: must be at most"),
    ("demo_episodes=100000000000", "demo_episodes = 100000000000: must be at most"),
    ("hidden=10000000", "hidden = 10000000: must be at most"),
    ("buffer_size=90000000", "more than half of this machine's"),
    ("overload_penalty_j_per_pod_s=-2", "overload_penalty_j_per_pod_s = -2.0: must be -1"),
    ("overload_penalty_j_per_pod_s=nan", "expected a finite number"),
])
def test_hyperparameters_are_checked_before_anything_is_written(tmp_path, override, message):
    r = CliRunner().invoke(main, ["train", "--model", str(tmp_path / "m.pth"), "-s", "tiny", "--steps", "10",
                                  "--set", override, "--log-dir", str(tmp_path / "log")])
    assert r.exit_code == 1 and message in r.output and r.output.count("\n") == 1, r.output
    assert not (tmp_path / "log").exists() and not (tmp_path / "m.pth").exists()


def test_an_existing_model_is_not_overwritten_without_force(tmp_path, trained):
    path = tmp_path / "m.pth"
    path.write_bytes(trained.read_bytes())
    r = CliRunner().invoke(main, ["train", "--model", str(path), "-s", "tiny", "--steps", "10"])
    assert r.exit_code == 1 and "--resume" in r.output and "--force" in r.output
    assert path.read_bytes() == trained.read_bytes()


def test_a_diverging_training_stops_with_one_line(tmp_path, monkeypatch):
    import rlmodel.agents.dqn as dqn

    real, calls = dqn.dqn_loss, 0

    def diverging(*args, **kwargs):  # the loss turns non-finite at the 150th gradient step
        nonlocal calls
        calls += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls >= 150 else loss

    monkeypatch.setattr(dqn, "dqn_loss", diverging)
    r = CliRunner().invoke(main, ["train", "--model", str(tmp_path / "m.pth"), "-s", "tiny", "--steps", "600",
                                  "--set", "pretrain_steps=100", "--set", "demo_episodes=4",
                                  "--set", "learning_starts=50", "--set", "checkpoint_every=100",
                                  "--set", "validation_episodes=0", "--log-dir", str(tmp_path / "log")])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert [ln for ln in r.output.splitlines() if ln.startswith("Error")] == [
        ln for ln in r.output.splitlines() if "training diverged" in ln]
    data = load_model(tmp_path / "m.pth").data  # the last checkpoint before it: finite, loadable
    assert data["global_step"] < 150


def _fields():
    from hypothesis import strategies as st

    leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=8), st.just(torch.zeros(2)), st.just(torch.full((3,), float("nan"))))
    return st.dictionaries(st.sampled_from(["format", "format_version", "feature_schema", "network", "hyperparameters",
                                            "scenario", "seed", "global_step", "episodes", "metrics", "state_dict",
                                            "optimizer", "rng", "last_state_dict"]),
                           st.one_of(leaf, st.lists(leaf, max_size=3), st.dictionaries(st.text(max_size=6), leaf,
                                                                                         max_size=3)), max_size=8)


def test_any_model_file_content_loads_or_is_one_line(tmp_path, trained):
    """Property-based: a model file whose fields are replaced by anything torch.save can store either loads or
    is refused with one ModelError line; it never raises anything else."""
    from hypothesis import HealthCheck, given, settings

    base = torch.load(trained, weights_only=True)

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(_fields())
    def check(changes):
        data = {**base, **changes}
        path = tmp_path / "h.pth"
        torch.save(data, path)
        try:
            load_model(path)
        except ModelError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)

    check()


def test_a_full_disk_stops_the_power_monitor_with_one_line(tmp_path):
    from tests.fakes import FakeRapl
    from tests.test_power_monitor import run_monitor

    with FakeRapl(tmp_path / "pc", watts=[20.0], range_uj=[2**32]):
        r = run_monitor("--rapl-root", str(tmp_path / "pc"), "--duration", "0.5", "--interval", "0.1",
                        "--csv", "/dev/full")  # every write fails with ENOSPC
    assert r.returncode == 1 and "No space left" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_attention_scorer_is_permutation_equivariant_and_sees_the_other_nodes(tmp_path):
    torch.manual_seed(0)
    net = NodeScorer(NUM_FEATURES, hidden=16, layers=1, attention=True)
    x = torch.randn(3, 7, NUM_FEATURES)
    perm = torch.randperm(7)
    q = net(x)
    assert q.shape == (3, 7)
    assert torch.allclose(net(x[:, perm]), q[:, perm], atol=1e-6)  # a node's bid does not depend on its index
    y = x.clone()
    y[:, 6] += 5.0  # change one node: the others' bids move too (they see the summary)
    assert not torch.allclose(net(y)[:, :6], q[:, :6])
    plain = NodeScorer(NUM_FEATURES, hidden=16, layers=1)
    assert torch.allclose(plain(y)[:, :6], plain(x)[:, :6])  # the MLP scores each node alone
    with pytest.raises(ValueError):
        NodeScorer(NUM_FEATURES, layers=0, attention=True)


def test_an_attention_model_trains_saves_and_loads(tmp_path):
    from rlmodel.agents.model_file import load_model

    path = tmp_path / "att.pth"
    train(DQNConfig(seed=2, attention=True, **SMALL), load_scenario("tiny"), path)
    model = load_model(path)
    assert model.network.attention and model.data["network"]["attention"] is True
    policy = DQNPolicy.load(path)
    env = PodPlacementEnv(load_scenario("hetero-sleep").scaled(2))  # another node count
    obs, info = env.reset(seed=1)
    assert info["action_mask"][policy.predict(obs, info["action_mask"])]
    r = CliRunner().invoke(main, ["train", "--model", str(path), "--resume", "--steps", "700", "--set",
                                  "attention=false"])
    assert r.exit_code == 1 and "attention" in r.output


def test_runtime_aware_pick_feature_marks_the_rules_choice():
    from rlmodel.agents.features import FEATURES

    env = PodPlacementEnv("classes-sleep")
    rule = make_policy("runtime-aware")
    obs, info = env.reset(seed=4)
    for _ in range(40):
        mask = info["action_mask"]
        pick = node_features(obs)[:, FEATURES.index("runtime_aware_pick")] > 0
        scores = rule.scores(obs, mask)
        assert pick[rule.predict(obs, mask)] and (pick <= mask).all()
        assert np.array_equal(pick, mask & (scores == scores[mask].max()))
        obs, _, done, _, info = env.step(rule.predict(obs, mask))
        if done:
            break


def test_overload_weight_changes_what_training_optimises(tmp_path):
    """`overload_penalty_j_per_pod_s` replaces the scenario's weight in what training and validation optimise: the
    same (untrained) network validates higher by exactly (5000 - 20) J x its overload; the file keeps the scenario."""
    from rlmodel.agents.dqn import VALIDATION_SEED_OFFSET
    from rlmodel.agents.model_file import load_model

    common = dict(SMALL, total_steps=50, learning_starts=1000, checkpoint_every=1000, demonstrator="",
                  validation_episodes=3)
    sc = load_scenario("classes")
    assert sc.reward.overload_penalty_j_per_pod_s == 20
    env = PodPlacementEnv(sc)
    for seed in range(1, 9):  # an untrained network that overloads nodes, so that the check below can fail
        plain = train(DQNConfig(seed=seed, **common), sc, tmp_path / "plain.pth")
        policy = DQNPolicy.load(tmp_path / "plain.pth")
        overload = np.mean([run_episode(env, policy, VALIDATION_SEED_OFFSET + i).overload_pod_s for i in range(3)])
        if overload > 0:
            break
    assert overload > 0
    heavy = train(DQNConfig(seed=seed, overload_penalty_j_per_pod_s=5000, **common), sc, tmp_path / "heavy.pth")
    diff_kj = heavy["metrics"]["validation_cost_kj"] - plain["metrics"]["validation_cost_kj"]
    assert diff_kj == pytest.approx((5000 - 20) * overload / 1000, rel=1e-6)
    assert load_model(tmp_path / "heavy.pth").hyperparameters["overload_penalty_j_per_pod_s"] == 5000
    with pytest.raises(ModelError, match="applies to training in the twin"):
        train(DQNConfig(seed=1, overload_penalty_j_per_pod_s=100, **common), sc, tmp_path / "x.pth", env=env)


def test_headroom_features_mark_the_rules_choice_and_the_overload():
    from rlmodel.agents.features import FEATURES
    from rlmodel.envs.observation import NODE_COL, POD_COL

    env = PodPlacementEnv("classes-sleep")
    rule = make_policy("runtime-aware-headroom")
    differs = 0
    for seed in range(1, 9):
        obs, info = env.reset(seed=seed)
        for _ in range(80):
            mask = info["action_mask"]
            feats = node_features(obs)
            pick = feats[:, FEATURES.index("headroom_pick")] > 0
            scores = rule.scores(obs, mask)
            assert pick[rule.predict(obs, mask)] and np.array_equal(pick, mask & (scores == scores[mask].max()))
            differs += not np.array_equal(pick, feats[:, FEATURES.index("runtime_aware_pick")] > 0)
            nodes = obs["nodes"].astype(np.float64)
            running = (nodes[:, NODE_COL["asleep"]] == 0) & (nodes[:, NODE_COL["waking_s"]] == 0)
            in_use = np.where(running, nodes[:, NODE_COL["cpu_used_cores"]], nodes[:, NODE_COL["cpu_requested_cores"]])
            after = (in_use + obs["pod"][POD_COL["cpu_request_cores"]]) / nodes[:, NODE_COL["cpu_cores"]]
            assert np.allclose(feats[:, FEATURES.index("cpu_in_use_frac_after")], after, rtol=1e-5)
            obs, _, done, _, info = env.step(rule.predict(obs, mask))
            if done:
                break
    assert differs > 0  # the guard changed some choices in these episodes: the two priors are not the same feature


def test_validation_at_scale_scores_each_checkpoint_on_both_sizes(tmp_path):
    """`validation_scale = 2`: the validation cost is the mean cost on the scenario plus the mean cost on it scaled
    to twice the nodes, halved (computed here independently from the model file's policy); 0 is refused."""
    from rlmodel.agents.dqn import VALIDATION_SEED_OFFSET

    common = dict(SMALL, total_steps=50, learning_starts=1000, checkpoint_every=1000, demonstrator="",
                  validation_episodes=2)
    sc = load_scenario("hetero-sleep")
    out = train(DQNConfig(seed=3, validation_scale=2, **common), sc, tmp_path / "m.pth")
    policy = DQNPolicy.load(tmp_path / "m.pth")
    small, big = PodPlacementEnv(sc), PodPlacementEnv(sc.scaled(2))
    want = np.mean([-run_episode(small, policy, VALIDATION_SEED_OFFSET + i).ret for i in range(2)]) + \
        np.mean([-run_episode(big, policy, VALIDATION_SEED_OFFSET + i).ret for i in range(2)]) / 2
    assert out["metrics"]["validation_cost_kj"] == pytest.approx(want, rel=1e-9)
    plain = train(DQNConfig(seed=3, **common), sc, tmp_path / "p.pth")  # the same weights, validated as given
    assert plain["metrics"]["validation_cost_kj"] == pytest.approx(
        np.mean([-run_episode(small, policy, VALIDATION_SEED_OFFSET + i).ret for i in range(2)]), rel=1e-9)
    with pytest.raises(ModelError, match="validation_scale = 0"):
        train(DQNConfig(seed=3, validation_scale=0, **common), sc, tmp_path / "x.pth")
