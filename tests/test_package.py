"""The wheel works outside the checkout: package data (manifests, JMeter plan and launcher, the images'
build contexts) is inside it and found with importlib.resources."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "rlmodel", "minikube", "jmeter", "containers", "testapp"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source tree, unpacked with `pip install --target` (no deps: the
    test venv has them); returns the target folder."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        from_, to = ROOT / name, src / name
        if from_.is_dir():
            shutil.copytree(from_, to, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(from_, to)
    dist = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(dist), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("rlsched-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    # the wheel holds copies of the linked folders' files, not links
    for needed in ("rlmodel/assets/manifests/30-testapp.yaml", "rlmodel/assets/jmeter/testapp.jmx",
                   "rlmodel/assets/jmeter/launcher/RlschedJMeter.java", "rlmodel/assets/jmeter/Dockerfile",
                   "rlmodel/assets/resource_blocker/Dockerfile", "rlmodel/assets/testapp/app.py",
                   "rlmodel/sim/data/node_types.toml", "rlmodel/sim/scenarios/hetero-sleep.toml"):
        assert needed in names, needed
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    return target


def _run(installed: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # outside the checkout, with the unpacked wheel first on the path (before the editable install's finder)
    env = {**os.environ, "PYTHONPATH": str(installed)}
    env.pop("RLSCHED_CONFIG", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env)


def test_the_wheel_reads_its_files_outside_the_checkout(installed, tmp_path):
    code = """
import rlmodel, rlmodel.assets
from pathlib import Path
from rlmodel.load.jmeter import DEFAULT_PLAN, LAUNCHER_SRC
from rlmodel.testbed.kube import load_manifests, testapp_template
from rlmodel.testbed.cluster import IMAGES
from rlmodel.sim import load_scenario
root = Path(rlmodel.__file__).parent
print(root)
assert DEFAULT_PLAN.is_relative_to(root) and b"<jmeterTestPlan" in DEFAULT_PLAN.read_bytes()
assert LAUNCHER_SRC.is_relative_to(root) and b"class RlschedJMeter" in LAUNCHER_SRC.read_bytes()
docs = load_manifests()
assert {d["kind"] for d in docs} >= {"Namespace", "DaemonSet", "Service", "Pod"}, docs
assert testapp_template(docs)["spec"]["schedulerName"] == "rlsched"
for tag, (context, dockerfile) in IMAGES.items():
    assert context.is_relative_to(root) and (context / dockerfile).is_file(), tag
assert load_scenario("hetero-sleep").num_nodes == 10
"""
    r = _run(installed, tmp_path, "-c", code)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).resolve() == (installed / "rlmodel").resolve()
    assert ROOT not in Path(r.stdout.strip()).resolve().parents


def test_the_wheel_cli_runs(installed, tmp_path):
    r = _run(installed, tmp_path, "-m", "rlmodel.cli", "load", "run", "--help")
    assert r.returncode == 0 and "--target" in r.stdout, r.stderr
    r = _run(installed, tmp_path, "-m", "rlmodel.cli", "benchmark", "--scenario", "tiny", "--episodes", "1",
             "--policies", "round-robin", "--no-oracle", "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b" / "summary.csv").is_file()
