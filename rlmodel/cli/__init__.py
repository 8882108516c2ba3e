"""The `rlsched` command line: a thin shell over the library, one module per concern.

`twin` (scenarios, benchmark, train, test), `testbed` (cluster, calibrate), `power` (monitor,
summary), `load` (JMeter), with shared options in `options`. Every command parses its options, calls
the library, prints, and exits: 0 on success, 1 with a one-line message for a user's mistake (the
library's typed errors, `rlmodel.errors`), 2 for usage errors.
"""

from __future__ import annotations

import click

from rlmodel.errors import RlschedError


class _Group(click.Group):
    """Turns the library's typed errors into `Error: <one line>` and exit 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RlschedError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM under `rlsched` (rlmodel.console): exit 130, not 1
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="rlsched")
def main() -> None:
    """rlsched: energy-aware Kubernetes scheduling on a digital twin and a Minikube testbed.

    \b
    Example:
      rlsched benchmark --scenario hetero-sleep --episodes 20
      rlsched scenarios
    """


def _register() -> None:
    from rlmodel.cli import load, power, scheduler, serve, sweep, testbed, trace, twin

    for module in (twin, trace, sweep, testbed, power, load, scheduler, serve):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

__all__ = ["main"]
