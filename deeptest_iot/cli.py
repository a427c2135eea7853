"""The `deeptest-iot` command: a click group whose subcommands live in their own modules."""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import DeeptestError

# (module, attribute) of each subcommand; modules are imported lazily so that
# `deeptest-iot --help` does not pay for importing TensorFlow.
SUBCOMMANDS = {
    "report": (".cli_results", "report"),
    "junit": (".cli_results", "junit"),
    "compare": (".cli_results", "compare"),
    "export": (".cli_results", "export"),
    "validate": (".cli_results", "validate"),
    "inspect": (".cli_model", "inspect"),
    "profile": (".cli_model", "profile"),
    "run": (".cli_run", "run"),
    "transforms": (".cli_transforms", "transforms"),
    "samples": (".cli_samples", "samples"),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx, name):
        if name in SUBCOMMANDS:
            module, attr = SUBCOMMANDS[name]
            return getattr(importlib.import_module(module, __package__), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DeeptestError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted: results written so far are kept; rerun with --resume", err=True)
            ctx.exit(130)
        except Exception:  # a bug in deeptest-iot, not in the user's input
            import traceback

            traceback.print_exc()
            click.echo("internal error: this is a bug in deeptest-iot, please report it "
                       "with the traceback above", err=True)
            ctx.exit(3)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deeptest-iot")
def main():
    """Test camera neural networks (steering, classification, detection) with realistic
    transformed images, neuron coverage and metamorphic relations, in the style of DeepTest."""


def run() -> None:  # pragma: no cover - console entry for `python -m deeptest_iot`
    sys.exit(main())
