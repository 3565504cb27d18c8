"""The `tamperscope` console script: one command, thin over library functions.

Each part contributes its subcommand through an `add_parser(subparsers)`
function in its own `command` module; this file only wires them together and
turns expected errors into one-line messages with exit code 2 (usage) or 1.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path

from . import __version__
from .model import interrupts

# Modules that add subcommands (each has add_parser(subparsers)).
COMMANDS = [
    "tamperscope.lab.command",
    "tamperscope.helper.command",
    "tamperscope.probe.command",
    "tamperscope.demo",
    "tamperscope.probe.locate",
    "tamperscope.probe.remote",
    "tamperscope.analysis.command",
    "tamperscope.collector.command",
]


# Which module serves a subcommand, so a run imports only what it needs (duckdb, pyarrow
# and the lab are slow to import); modules not named here are always loaded.
ROUTES = {
    "lab": "tamperscope.lab.command",
    "helper": "tamperscope.helper.command",
    "run": "tamperscope.probe.command",
    "demo": "tamperscope.demo",
    "locate": "tamperscope.probe.locate",
    "remote": "tamperscope.probe.remote",
    "analyze": "tamperscope.analysis.command",
    "report": "tamperscope.analysis.command",
    "export": "tamperscope.analysis.command",
    "serve": "tamperscope.collector.command",
}


class UsageError(Exception):
    """The user asked for something that cannot be done as asked (exit 2)."""


def path_arg(value: str) -> Path:
    """argparse ``type`` of an option naming a file or directory: an empty one is refused. ``Path("")`` is ``.``,
    the current directory, which no one means by it (a ``--findings "$DIR"`` whose variable is unset). Where ``-``
    means standard output, ``./-`` still names a file: it comes back absolute (a helper's mutation pass: ``-o ./-``
    wrote to standard output, as ``Path("./-")`` is ``-``)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a path, not ''")
    path = Path(value)
    if str(path) == "-" and value != "-":  # "./-": a file named "-" (Path drops the "./"), not standard output
        return path.absolute()
    return path


def path_text_arg(value: str) -> str:
    """`path_arg` for an option kept as text (one that also takes ``-``, standard output, or is read by a library
    that wants a string)."""
    path_arg(value)
    return value


def utf8_path_arg(value: str) -> Path:
    """`path_arg`, refusing too a path whose bytes are not UTF-8 (`check_utf8_path`): for a path a store keeps,
    or that DuckDB opens."""
    from .model.inputs import BadInput, check_utf8

    path = path_arg(value)
    try:
        check_utf8(value, "")
    except BadInput as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return path


def check_utf8_path(what: str, value: str | os.PathLike[str] | None) -> None:
    """UsageError, one line, for a path given (``what``: the option or variable that named it) whose bytes are
    not UTF-8: DuckDB cannot open one (``std::bad_cast``), nor a store keep its name. The check for a path that
    did not come through `utf8_path_arg` ($TAMPERSCOPE_DB)."""
    if value is None:
        return
    from .model.inputs import BadInput, check_utf8

    try:
        check_utf8(value, what)
    except BadInput as e:
        raise UsageError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (it prints the whole usage first); subcommands inherit it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {_short(message)} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only` (a subcommand name), just that subcommand's module is loaded."""
    p = _Parser(
        prog="tamperscope",
        description="An open observatory of network interference: whether, how, where and by what "
                    "equipment traffic is blocked, with evidence others can check.",
    )
    p.add_argument("--version", action="version", version=f"tamperscope {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    routed = set(ROUTES.values())
    wanted = ROUTES.get(only or "")
    for name in COMMANDS:
        if wanted is None or name == wanted or name not in routed:
            importlib.import_module(name).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    _closed_streams_to_devnull()
    args_list = sys.argv[1:] if argv is None else argv
    if args_list and args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version"):
        # argparse would only say that COMMAND is missing
        print(f"tamperscope: unknown option {_short(args_list[0])}: options come after the command "
              "(see tamperscope --help)", file=sys.stderr)
        return 2
    parser = build_parser(args_list[0] if args_list and args_list[0] in ROUTES else None)
    args = parser.parse_args(argv)
    from .lab.manager import LabError
    from .model.profile import ProfileError

    if args_list and args_list[0] in _DUCKDB_COMMANDS:
        interrupts.install()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a full disk under `> file` is then one line, not a traceback
        return code
    except LabError as e:
        print(f"tamperscope: {_short(str(e))}", file=sys.stderr)
        return e.exit_code
    except (UsageError, ProfileError) as e:
        print(f"tamperscope: {_short(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # a run's measurements are written as they are made: what is in the output stays, and the same command
        # measures the rest (QA: Ctrl-C said only "interrupted")
        resumes = bool(args_list) and args_list[0] in ("run", "remote")
        print("tamperscope: interrupted" + (": the measurements written are kept, and the same command measures "
                                            "the rest" if resumes else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        quiet_stdout()
        return 0
    except OSError as e:
        user = e.errno in _PATH_ERRNOS and e.filename is not None
        if e.errno not in _ENVIRONMENT_ERRNOS and not user:
            raise
        quiet_stdout()  # what is still buffered for it would fail again at exit
        name = os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes)) else str(e.filename)
        where = f" ({_short(name)})" if e.filename else ""
        print(f"tamperscope: {e.strerror or e}{where}", file=sys.stderr)
        return 2 if user else 1
    except Exception as e:
        if not interrupts.interrupted(e):  # DuckDB's 'Query interrupted': Ctrl-C met inside a statement
            raise
        print("tamperscope: interrupted", file=sys.stderr)
        return 130


# The commands whose work is DuckDB's statements, where a Ctrl-C is noted (`interrupts`); not the others, whose
# asyncio.run cancels its main task on Ctrl-C only where Python's own handler is in place.
_DUCKDB_COMMANDS = frozenset({"analyze", "report", "export"})

# The machine's fault, not the program's nor the user's: said in one line, exit 1.
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})
# A path the user gave that no file can have, or that leads nowhere: one line, exit 2, wherever a command
# met it (each command checks its own paths first; this is for those a check did not foresee).
_PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR})
_SHOWN = 300  # characters of a message or a value the user gave: a 70 kB URL is not echoed whole


def _short(text: str) -> str:
    """One line, at most `_SHOWN` characters: the start and the end of anything longer."""
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN * 2 // 3]}…{text[-_SHOWN // 3:]}"


def _closed_streams_to_devnull() -> None:
    """``tamperscope ... >&-``: Python sets a closed standard stream to None, and the first print would raise.
    What would have gone there goes nowhere, as it would for a shell command."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process


def quiet_stdout() -> None:
    """Standard output to /dev/null: a reader that closed the pipe (`| head`) or a full disk has had all
    it will take, and what is still buffered for it would fail again when the interpreter exits."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
