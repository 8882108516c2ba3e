"""Every typed error the library raises. The CLI turns each into a one-line message and exit 1.

One exception lives elsewhere on purpose: `rlmodel.power.kvm_power_monitor.MonitorError`, because that
module also runs alone on the KVM host's system Python (standard library only, no rlmodel package).
"""


class RlschedError(Exception):
    """Base class of every error a user can cause (bad file, bad option, bad model, unreachable testbed)."""


class ScenarioError(RlschedError):
    """A scenario file or name is invalid. The message names the file and the key."""


class PolicyError(RlschedError):
    """An unknown policy name or a policy that cannot run on this scenario."""


class ModelError(RlschedError):
    """A model file is missing, corrupt or incompatible with this version of rlsched, or a
    hyperparameter is out of range."""


class ConfigError(RlschedError):
    """A testbed configuration value is invalid; the message names the file (or variable) and the key."""


class TestbedError(RlschedError):
    """The testbed (cluster, Prometheus, power monitor, a node) failed or is unreachable."""

    __test__ = False  # not a pytest test class


class LoadError(RlschedError):
    """JMeter is missing, failed, or wrote no samples."""


class PowerCsvError(RlschedError):
    """A power CSV that does not follow the schema; the message names file, line and column."""


class CalibrationError(RlschedError):
    """Bad or insufficient calibration input."""


class OutputError(RlschedError):
    """An output file or folder cannot be written (under a file, read-only, a full disk); names the path."""
