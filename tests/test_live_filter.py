"""kube-scheduler's filter semantics and pod requests on hand-written objects (JSON form, as the API sends)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rlmodel.live.filter import NodeInfo, Taint, describe, filter_node, filter_nodes, node_info, unsupported
from rlmodel.live.podspec import ObjectError, pod_requests


def pod(cpu="500m", mem="256Mi", **spec):
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {
        "requests": {"cpu": cpu, "memory": mem}}}], **spec}}


def node(name="n1", cpu="4", mem="8Gi", labels=None, taints=None, unschedulable=False, pods="110"):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": pods}}}


def test_pod_requests_follow_upstream_with_init_containers_sidecars_and_overhead():
    p = {"spec": {
        "containers": [{"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
                       {"resources": {"requests": {"cpu": "200m", "memory": "128Mi"}}}],
        "initContainers": [
            {"resources": {"requests": {"cpu": "1", "memory": "64Mi"}}},                        # plain init
            {"restartPolicy": "Always", "resources": {"requests": {"cpu": "50m", "memory": "512Mi"}}},  # sidecar
            {"resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}}],                     # after the sidecar
        "overhead": {"cpu": "10m", "memory": "16Mi"}}}
    cpu, mem = pod_requests(p)
    # cpu: max(app 0.3 + sidecar 0.05, init 1.0, init 0.1 + sidecar 0.05) + overhead 0.01
    assert cpu == pytest.approx(1.0 + 0.01)
    # memory: max(256 + 512, 64, 1024 + 512) MiB + 16 MiB
    assert mem == pytest.approx((1536 + 16) / 1024)
    assert pod_requests({"spec": {"containers": [{"name": "c"}]}}) == (0.0, 0.0)  # BestEffort
    with pytest.raises(ObjectError, match=r"spec.containers\[0\].resources.requests.cpu: invalid quantity"):
        pod_requests(pod(cpu="lots"))


def test_resources_fit_counts_what_is_bound_and_the_pod_limit():
    n = node_info(node(cpu="2", mem="4Gi", pods="3"), cpu_requested=1.5, memory_requested=1.0, pods=1)
    assert filter_node(pod(cpu="500m"), (0.5, 0.25), n) is None
    assert filter_node(pod(cpu="600m"), (0.6, 0.25), n) == "Insufficient cpu"
    assert filter_node(pod(), (0.1, 3.5), n) == "Insufficient memory"
    full = node_info(node(pods="3"), pods=3)
    assert filter_node(pod(), (0.1, 0.1), full) == "Too many pods"


def test_taints_and_tolerations():
    n = node_info(node(taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"},
                               {"key": "soft", "effect": "PreferNoSchedule"}]))
    assert filter_node(pod(), (0.5, 0.25), n) == "node(s) had untolerated taint {gpu: yes}"
    for tol in ({"key": "gpu", "operator": "Equal", "value": "yes"},
                {"key": "gpu", "operator": "Exists"},
                {"operator": "Exists"},
                {"key": "gpu", "value": "yes", "effect": "NoSchedule"}):
        assert filter_node(pod(tolerations=[tol]), (0.5, 0.25), n) is None, tol
    for tol in ({"key": "gpu", "value": "no"}, {"key": "gpu", "operator": "Exists", "effect": "NoExecute"},
                {"key": "other", "operator": "Exists"}):
        assert filter_node(pod(tolerations=[tol]), (0.5, 0.25), n) is not None, tol
    cordoned = node_info(node(unschedulable=True))
    assert filter_node(pod(), (0.5, 0.25), cordoned) == "node(s) were unschedulable"
    ok = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert filter_node(pod(tolerations=ok), (0.5, 0.25), cordoned) is None


def _affinity(*terms):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


@pytest.mark.parametrize("term,fits", [
    ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}, True),
    ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, False),
    ({"matchExpressions": [{"key": "absent", "operator": "NotIn", "values": ["a"]}]}, True),
    ({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, True),
    ({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, False),
    ({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}, True),
    ({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["8"]}]}, False),
    ({"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["1"]}]}, False),  # not an integer label
    ({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}, True),
    ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                           {"key": "cores", "operator": "Lt", "values": ["4"]}]}, False),  # AND within a term
    ({}, False),  # an empty term matches nothing
])
def test_required_node_affinity(term, fits):
    n = node_info(node(labels={"zone": "a", "cores": "12"}))
    reason = filter_node(pod(affinity=_affinity(term)), (0.5, 0.25), n)
    assert (reason is None) == fits, reason


def test_terms_are_ored_and_node_selector_and_node_name():
    n = node_info(node(labels={"zone": "a"}))
    no = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
    yes = {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}
    assert filter_node(pod(affinity=_affinity(no, yes)), (0.5, 0.25), n) is None
    assert filter_node(pod(nodeSelector={"zone": "b"}), (0.5, 0.25), n) is not None
    assert filter_node(pod(nodeSelector={"zone": "a"}), (0.5, 0.25), n) is None
    assert filter_node(pod(nodeName="n2"), (0.5, 0.25), n) == "node(s) didn't match the requested node name"
    with pytest.raises(ObjectError, match="unknown operator"):
        filter_node(pod(affinity=_affinity({"matchExpressions": [{"key": "zone", "operator": "Near"}]})),
                    (0.5, 0.25), n)


def test_unsupported_constraints_are_named_not_ignored():
    required = {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]}
    assert unsupported(pod(affinity={"podAntiAffinity": required})) == \
        "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    assert unsupported(pod(topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone"}])) == \
        "spec.topologySpreadConstraints[0]"
    assert unsupported(pod(topologySpreadConstraints=[{"maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}])) is None
    assert unsupported(pod(affinity={"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}})) is None


def test_filter_nodes_and_the_failed_scheduling_message():
    nodes = [node_info(node("a", cpu="1")), node_info(node("b", cpu="1")),
             node_info(node("c", taints=[{"key": "k", "effect": "NoExecute"}])), node_info(node("d"))]
    feasible, failed = filter_nodes(pod(cpu="2"), (2.0, 0.25), nodes)
    assert feasible == [3] and set(failed) == {"a", "b", "c"}
    assert describe(failed, 4) == "0/4 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {k: }."


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=12), inner, max_size=3)),
                           max_leaves=12)


@example({"nodeSelector": {"\n": False}})  # a key with a newline: the message stays one line
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["containers", "initContainers", "tolerations", "nodeSelector", "affinity",
                                        "nodeName", "overhead", "topologySpreadConstraints"]), json_values,
                       max_size=4))
def test_any_pod_spec_is_filtered_or_refused_with_an_object_error(spec):
    n = NodeInfo("n", {"zone": "a"}, [Taint("k", "v", "NoSchedule")], False, 4.0, 8.0)
    try:
        req = pod_requests({"spec": spec})
        unsupported({"spec": spec})
        filter_node({"spec": spec}, req, n)
    except ObjectError as exc:
        assert "\n" not in str(exc)
