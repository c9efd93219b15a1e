"""Entry point: builds the typer app and turns MediscopeErrors into one line, exit 2.

Ctrl-C exits with 130 and SIGTERM (sent by cluster schedulers such as SLURM before they
kill a job) with 143, both after the same clean shutdown and with one line of output.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click
import typer

from mediscope import __version__
from mediscope.cli import (
    benchmark,
    check,
    compare,
    convert,
    data,
    demo,
    export,
    listing,
    predict,
    report,
    serve,
    slurm,
    train,
)
from mediscope.errors import InterruptedRun, MediscopeError, Terminated, TerminatedRun

#: Packages of ``mediscope[train]``: a command that needs one says how to install them.
TRAINING_STACK = frozenset(
    {
        "torch",
        "torchvision",
        "lightning",
        "pytorch_lightning",
        "timm",
        "torchmetrics",
        "albumentations",
        "pandas",
        "matplotlib",
        "sklearn",
        "segmentation_models_pytorch",
        "ensemble_boxes",
        "pytorch_grad_cam",
        "jinja2",
        "tensorboard",
    }
)

app = typer.Typer(
    name="mediscope",
    help="Deep learning on medical and microbiological images: classification, detection "
    "and segmentation from one config file and one command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"mediscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """mediscope: one config file, one command."""


train.register(app)
app.command("predict")(predict.predict_command)
app.command("ensemble")(predict.ensemble_command)
app.add_typer(data.app, name="data")
app.command("list")(listing.list_command)
app.command("convert")(convert.convert_command)
app.command("check")(check.check_command)
app.command("demo")(demo.demo_command)
app.command("report")(report.report_command)
app.command("compare")(compare.compare_command)
app.command("export")(export.export_command)
app.command("serve")(serve.serve_command)
app.command("benchmark")(benchmark.benchmark_command)
app.command("slurm")(slurm.slurm_command)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # Once: a second SIGTERM must not interrupt the cleanup of the first.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt subclass),
    so that it stops a command as cleanly as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped(path: str, exc: KeyboardInterrupt) -> InterruptedRun:
    """The one-line error of a command stopped by Ctrl-C (130) or SIGTERM (143)."""
    terminated = isinstance(exc, Terminated)
    kind = TerminatedRun if terminated else InterruptedRun
    by = "SIGTERM" if terminated else "Ctrl-C"
    return kind(
        f"stopped by {by} before the end; no output was left half-written",
        where=path,
        hint="run the command again",
    )


def _stop_cleanly(command: Any, path: str) -> None:
    """Makes every command of the tree under ``command`` turn Ctrl-C or SIGTERM into
    :func:`_stopped`: typer would return exit code 130 for both, without a word.

    ``command`` is a command of typer's own copy of click (hence no type check here).
    """
    commands = getattr(command, "commands", None)
    if commands is not None:  # a group
        for name, sub in commands.items():
            _stop_cleanly(sub, f"{path} {name}")
        return
    callback = command.callback
    if callback is None:
        return

    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise _stopped(path, exc) from None

    command.callback = guarded


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 1 internal error, 2 user error,
    130 Ctrl-C, 143 SIGTERM)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MEDISCOPE_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    command = typer.main.get_command(app)
    _stop_cleanly(command, "mediscope")
    try:
        with sigterm_as_interrupt():
            code = command.main(args=args, prog_name="mediscope", standalone_mode=False)
        if code == 130:  # typer's answer to a Ctrl-C outside the commands (parsing)
            raise KeyboardInterrupt
    except MediscopeError as exc:
        if debug:
            traceback.print_exc()
        rank = _process_rank()
        if rank and isinstance(exc, InterruptedRun):
            # Process 0 of the DDP run says it, once, with the exit code. Another process
            # that stopped with it exits quietly with 0: Lightning's ddp launcher kills
            # process 0 at once when another process fails, before it could say it.
            return 0
        # One line, whatever a message quotes (a CSV header cell, a library's message).
        prefix = f"error: process {rank}: " if rank else "error: "
        print(prefix + " ".join(str(exc).split()), file=sys.stderr)
        return exc.exit_code
    except (click.exceptions.Exit, typer.Exit) as exc:
        return int(exc.exit_code or 0)
    except (click.ClickException, typer.TyperException) as exc:
        return _usage_error(exc)
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt) as exc:
        # click turns KeyboardInterrupt (and so Terminated) into Abort, from the original
        stop = exc if isinstance(exc, KeyboardInterrupt) else exc.__cause__
        error = _stopped("mediscope", stop if isinstance(stop, Terminated) else KeyboardInterrupt())
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as exc:
        if debug:
            traceback.print_exc()
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing and missing.split(".")[0] in TRAINING_STACK:
            print(
                f"error: this command needs the training stack ({missing} is not installed); "
                "install it with: pip install 'mediscope[train]'",
                file=sys.stderr,
            )
            return 2
        print(
            f"error: internal error: {type(exc).__name__}: {exc} (run with --debug for the "
            "traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    return code if isinstance(code, int) else 0


def _process_rank() -> int:
    """The rank of this process in a DDP run (0 alone), read from its environment."""
    if not any(k in os.environ for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID")):
        return 0
    from mediscope.engine.distributed import launch_rank

    return launch_rank()


def _usage_error(exc: click.ClickException | typer.TyperException) -> int:
    """Prints a command-line usage error (missing argument, bad option value) as one
    line naming the command's help; prints the help itself when no command was given.

    typer runs its own copy of click, so both kinds of exceptions arrive here.
    """
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        print(ctx.get_help())  # 'mediscope' or 'mediscope data' alone: the help
        return 0
    message = " ".join(exc.format_message().split()).rstrip(".")
    command = getattr(ctx, "command_path", None) or "mediscope"
    print(f"error: {message}; see '{command} --help'", file=sys.stderr)
    return int(getattr(exc, "exit_code", 2) or 2)


if __name__ == "__main__":
    sys.exit(main())
