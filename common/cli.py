"""How the project's commands fail: one line naming the problem and the fix, exit status 2."""
from __future__ import annotations

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
