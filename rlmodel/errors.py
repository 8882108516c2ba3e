"""Typed errors raised by the library. The CLI turns each into a one-line message and exit 1."""


class RlschedError(Exception):
    """Base class of every error a user can cause (bad file, bad option, bad model)."""


class ScenarioError(RlschedError):
    """A scenario file or name is invalid. The message names the file and the key."""


class PolicyError(RlschedError):
    """An unknown policy name or a policy that cannot run on this scenario."""
