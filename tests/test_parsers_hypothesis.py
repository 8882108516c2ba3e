"""Property-based tests of the loaders users feed files to: any scenario or testbed configuration either loads
and runs with finite numbers, or is refused with one line (exit 1) and nothing written."""

from __future__ import annotations

import json
import math

import pandas as pd
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rlmodel.cli import main
from rlmodel.errors import ConfigError, ScenarioError
from rlmodel.sim.scenario import load_scenario
from rlmodel.testbed.config import load_config


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


def toml(doc: dict) -> str:
    lines = []
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for table in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        else:
            lines.insert(0, f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


wild = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**30),
                 st.sampled_from([0, 1, 2, 0.5, 10**400, -1, 1e308, 1e-300]), st.booleans(),
                 st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=5),
                 st.lists(st.floats(0, 300), min_size=2, max_size=2))
pair = st.lists(st.floats(0.1, 20), min_size=2, max_size=2).map(sorted)
node_type = st.fixed_dictionaries(
    {"name": st.sampled_from(["x3550", "ml110-g4", "ml110-g5"]), "count": st.integers(1, 4)},
    optional={"cpu_cores": st.floats(1, 16), "memory_gib": st.floats(1, 32),
              "watts": st.lists(st.floats(0, 400), min_size=11, max_size=11).map(sorted),
              "background_cpu_cores": st.floats(0, 0.5)})
valid = st.fixed_dictionaries(
    {"node_types": st.lists(node_type, min_size=1, max_size=3),
     "workload": st.fixed_dictionaries({"pods_per_episode": st.integers(1, 30)}, optional={
         "mean_interarrival_s": st.floats(1, 100), "cpu_request_cores": pair,
         "memory_request_gib": pair, "duration_s": st.lists(st.floats(1, 3000), min_size=2, max_size=2).map(sorted)}),
     "cluster": st.fixed_dictionaries({}, optional={"idle_sleep_after_s": st.floats(0, 600),
                                                   "sleep_watts": st.floats(0, 20), "wake_s": st.floats(0, 60)}),
     "reward": st.fixed_dictionaries({}, optional={"energy_scale_j": st.floats(1, 1e6)})})
FIELDS = [("workload", "pods_per_episode"), ("workload", "mean_interarrival_s"), ("workload", "cpu_request_cores"),
          ("workload", "memory_request_gib"), ("workload", "duration_s"), ("workload", "usage_of_request"),
          ("cluster", "idle_sleep_after_s"), ("cluster", "sleep_watts"), ("cluster", "wake_s"),
          ("reward", "energy_scale_j"), ("reward", "unschedulable_penalty_j"), ("node", "count"),
          ("node", "cpu_cores"), ("node", "memory_gib"), ("node", "watts"), ("node", "name"),
          ("node", "background_cpu_cores"), ("node", "background_memory_gib"), ("cluster", "typo")]


@st.composite
def scenario(draw):
    """A valid scenario with up to two fields replaced by anything."""
    doc = draw(valid)
    for section, key in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
        table = doc["node_types"][0] if section == "node" else doc[section]
        table[key] = draw(wild)
    return doc


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario())
def test_any_scenario_loads_and_runs_finite_or_is_one_line(tmp_path, doc):
    path = tmp_path / "s.toml"
    path.write_text(toml(doc))
    try:
        load_scenario(str(path))
    except ScenarioError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        event("refused")
        r = CliRunner().invoke(main, ["scenarios", "--show", str(path)])
        assert r.exit_code == 1 and r.output.count("\n") == 1 and "Traceback" not in r.output
        return
    event("loaded")
    out = tmp_path / "b"
    r = CliRunner().invoke(main, ["benchmark", "-s", str(path), "-n", "1", "--policies", "round-robin",
                                  "--no-oracle", "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = pd.read_csv(out / "summary.csv")
    assert summary[["energy_j_mean", "cost_j_mean", "overload_pod_s_mean"]].map(math.isfinite).all().all()


sections = st.sampled_from(["minikube", "kubernetes", "ports", "prometheus", "power", "jmeter", "measurement",
                            "slo", "bogus"])
keys = st.sampled_from(["nodes", "cpus", "profile", "retries", "window_s", "latency_ms", "url", "threads",
                        "mode", "node_exporter", "scrape_interval_s", "x"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(sections, st.dictionaries(keys, wild, max_size=3), max_size=3))
def test_any_testbed_config_loads_or_is_one_line(tmp_path, doc):
    path = tmp_path / "rlsched.toml"
    path.write_text(toml(doc))
    try:
        cfg = load_config(path, env={})
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    for section in ("measurement", "slo", "prometheus"):
        for value in vars(getattr(cfg, section)).values():
            if isinstance(value, float):
                assert math.isfinite(value) and value >= 0


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=5) | st.text(max_size=30))
def test_a_table_setting_from_text_is_a_json_object_of_strings_or_one_line_error(value):
    """`--set scheduler.node_types=...` and RLSCHED_SCHEDULER_NODE_TYPES: a JSON object of strings, else refused."""
    text = json.dumps(value) if isinstance(value, dict) else value
    try:
        cfg = load_config(None, env={"RLSCHED_SCHEDULER_NODE_TYPES": text})
    except ConfigError as exc:
        assert str(exc).startswith("RLSCHED_SCHEDULER_NODE_TYPES: scheduler.node_types: expected a table")
        assert "\n" not in str(exc)
    else:
        assert cfg.scheduler.node_types == json.loads(text)


@given(st.one_of(
    st.builds(lambda n, s: f"{n}{s}", st.integers(0, 10**19),
              st.sampled_from(["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "u", "n"])),
    st.text(alphabet="0123456789.eEmkiMGT+-", max_size=12)))
@settings(deadline=None)  # the first call imports the kubernetes client
def test_quantity_reads_what_the_kubernetes_client_reads(text):
    """The quantity parser's fast path gives parse_quantity's value, and refuses what it refuses."""
    from kubernetes.utils import parse_quantity

    from rlmodel.live.podspec import ObjectError, quantity

    try:
        want = float(parse_quantity(text))
    except (ValueError, TypeError, ArithmeticError):
        want = None
    try:
        got = quantity(text, "f")
    except ObjectError as exc:
        assert want is None and str(exc).startswith("f: invalid quantity")
    else:
        assert got == want


# ------------------------------------------------------------------------------------ Kubernetes names
def _is_label(text: str, max_len: int = 63) -> bool:
    """A DNS-1123 label by its definition, written without a regular expression (the oracle)."""
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    return 0 < len(text) <= max_len and set(text) <= allowed and text[0] != "-" and text[-1] != "-"


name_text = st.text(alphabet=st.sampled_from("abz09-._A \n\u00e9"), max_size=70) | st.text(max_size=300)


@given(name_text)
def test_a_kubernetes_name_is_accepted_exactly_when_the_api_server_would(text):
    from rlmodel.k8s_names import dns_label_problem, dns_subdomain_problem

    assert (dns_label_problem(text) is None) == _is_label(text)
    # a subdomain: at most 253 characters, '.'-separated labels (no length limit of their own)
    assert (dns_subdomain_problem(text) is None) == (
        len(text) <= 253 and all(_is_label(p, max_len=253) for p in text.split(".")))
    for problem in (dns_label_problem(text), dns_subdomain_problem(text)):
        assert problem is None or "\n" not in problem


@given(name_text)
def test_a_namespace_setting_loads_or_is_one_line_naming_the_key(text):
    from rlmodel.k8s_names import dns_label_problem

    for key in ("kubernetes.namespace", "scheduler.namespaces"):
        try:
            cfg = load_config(env={}, overrides=[f"{key}={text}"])
        except ConfigError as exc:
            assert "\n" not in str(exc) and key in str(exc)
            items = [text] if key == "kubernetes.namespace" else [n.strip() for n in text.split(",") if n.strip()]
            assert any(dns_label_problem(n) for n in items) or "SECTION.KEY" in str(exc)
        else:
            if key == "kubernetes.namespace":
                assert _is_label(cfg.kubernetes.namespace)
            else:
                assert all(_is_label(n.strip()) for n in cfg.scheduler.namespaces.split(",") if n.strip())
