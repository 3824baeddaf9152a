"""How the project's commands fail: one line naming the problem and the fix, exit status 2."""
from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn


class UserError(Exception):
    """Bad input from the user (a path, a config value, a file). Printed as one line, no traceback."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def run(main: Callable[[], object]) -> None:
    """Entry-point wrapper: user errors become one line on stderr; Ctrl-C exits quietly."""
    try:
        main()
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)


def isolate_script(file: str) -> None:
    """Drop a script's own folder from sys.path, first thing in every entry script.

    `python train/train_imagenet.py` puts train/ first on sys.path, so our module names (config,
    model, metrics, distributed, errors, report, plots...) would shadow any library's top-level
    module of the same name for the whole process. The scripts import the project as
    `fastimagenet.*` (the editable install), so they need no path of their own.
    """
    here = os.path.dirname(os.path.abspath(file))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
