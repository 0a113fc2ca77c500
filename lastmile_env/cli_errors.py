"""One error path for every command line (``lastmile``, ``train.py``, ``evaluate.py``, ``python -m
lastmile_env.solomon``): a user's mistake -- a bad scenario, map, order log, model, checkpoint or output
path -- is ONE line on stderr naming the file, the field and the problem, and exit code 2; ``--debug``
prints the traceback as well. Loaders raise ``ValueError`` subclasses that say where (``ConfigError``,
``GraphError``, ``OrderLogError``, ``SolomonError``, ``ManifestError``, ...) and the operating system's
errors (``OSError``) name their file; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import traceback
import zipfile
from collections.abc import Callable, Sequence

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, zipfile.BadZipFile)
DEBUG_FLAG = "--debug"
DEBUG_HELP = "on an error, print the traceback too (default: one line)"


def one_line(exc: BaseException) -> str:
    """The exception's message on one line: a multi-line message's lines joined with '; ' (after a line
    ending in ':', a space)."""
    text = ""
    for part in (p.strip() for p in str(exc).splitlines()):
        if part:
            text += ("" if not text else " " if text.endswith(":") else "; ") + part
    return text or type(exc).__name__


def run_cli(main: Callable[[list[str]], int], argv: Sequence[str] | None, prog: str) -> int:
    """``main(argv)`` behind the one error path; ``argv`` defaults to ``sys.argv[1:]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(main(args) or 0)
    except USER_ERRORS as exc:
        if DEBUG_FLAG in args:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
