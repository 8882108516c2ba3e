"""Files the package ships and reads at run time, found with `importlib.resources` (never a checkout path).

In the source tree these are symbolic links to the folders that sit beside the package, where
developers edit them; a wheel holds copies:

* `manifests/`: the testbed's Kubernetes manifests (`minikube/manifests`);
* `jmeter/`: the JMeter plan `testapp.jmx`, the XStream launcher `launcher/RlschedJMeter.java`, and
  the Dockerfile of the JMeter image;
* `resource_blocker/`, `testapp/`: the Docker build contexts of the testbed's other images
  (`containers/resource_blocker`, `testapp`);
* `scheduler/`: the live scheduler's manifests (`minikube/scheduler`); `scheduler_image/`: its image's
  Dockerfile (`containers/scheduler`), whose context `rlsched scheduler image-context` assembles.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def asset_path(*parts: str) -> Path:
    """The file or folder `parts` under the package's assets, as a file-system path (W: read-only)."""
    root = resources.files("rlmodel.assets")
    target = root.joinpath(*parts)
    if not isinstance(target, Path):  # pragma: no cover - only a zip import would give another Traversable
        raise FileNotFoundError(f"rlmodel assets are not on the file system ({target}); install rlsched unzipped")
    return target
