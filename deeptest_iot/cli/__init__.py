"""The `deeptest-iot` command: a click group whose subcommands live in their own modules."""

from __future__ import annotations

import importlib
import os
import sys

import click

from deeptest_iot import __version__
from deeptest_iot.errors import DeeptestError

# (module, attribute) of each subcommand; modules are imported lazily so that
# `deeptest-iot --help` does not pay for importing TensorFlow.
SUBCOMMANDS = {
    "report": (".results", "report"),
    "show": (".results", "show"),
    "junit": (".results", "junit"),
    "compare": (".results", "compare"),
    "export": (".results", "export"),
    "validate": (".results", "validate"),
    "inspect": (".model", "inspect"),
    "profile": (".model", "profile"),
    "run": (".run", "run"),
    "drive": (".drive", "drive"),
    "transforms": (".transforms", "transforms"),
    "samples": (".samples", "samples"),
    "convert": (".convert", "convert"),
}

# Subcommands that load a model (so import TensorFlow); the others stay fast.
NEEDS_TENSORFLOW = {"inspect", "profile", "run", "drive", "samples", "validate", "convert"}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx, name):
        if name in SUBCOMMANDS:
            module, attr = SUBCOMMANDS[name]
            return getattr(importlib.import_module(module, __package__), attr)
        return super().get_command(ctx, name)

    def resolve_command(self, ctx, args):
        if args and args[0] in NEEDS_TENSORFLOW and not any(a in ("-h", "--help") for a in args[1:]):
            quiet_tensorflow_start()
        return super().resolve_command(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DeeptestError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # `deeptest-iot ... | head`: the reader left; no traceback, as any Unix tool
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(141)
        except OSError as exc:  # an output path below a file, a folder one may not write, a full disk
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: results written so far are kept; rerun with --resume", err=True)
            ctx.exit(130)
        except Exception:  # a bug in deeptest-iot, not in the user's input
            import traceback

            traceback.print_exc()
            click.echo("internal error: this is a bug in deeptest-iot, please report it "
                       "with the traceback above", err=True)
            ctx.exit(3)


def quiet_tensorflow_start() -> None:
    """Import TensorFlow and find its devices with the process's stderr silenced.

    TensorFlow 2.21 prints C++ start-up lines (no CUDA driver, oneDNN, absl) before Python logging
    exists, whatever TF_CPP_MIN_LOG_LEVEL says; on a CLI they bury the one line that matters. A
    failed import still raises, and is reported, after stderr is restored.
    """
    if "tensorflow" in sys.modules:
        return
    from deeptest_iot.quiet import quiet_stderr

    with quiet_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deeptest-iot")
def main():
    """Test camera neural networks (steering, classification, detection) with realistic
    transformed images, neuron coverage and metamorphic relations, in the style of DeepTest."""


def run() -> None:  # pragma: no cover - console entry for `python -m deeptest_iot`
    sys.exit(main())
