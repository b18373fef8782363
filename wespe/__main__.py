"""The ``wespe`` command (also ``python -m wespe``).

``enhance``, ``export`` and ``compare`` are plain commands that never import Lightning; every
other subcommand (``fit``, ``validate``, ``test``, ``predict``) is Lightning's CLI
(:mod:`wespe.cli`).
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console entry point of ``wespe``."""
    command, args = sys.argv[1:2], sys.argv[2:]
    if command == ["enhance"]:
        from wespe.enhance import enhance_main

        sys.exit(enhance_main(args))
    if command == ["export"]:
        from wespe.export import export_main

        export_main(args)
    elif command == ["compare"]:
        from wespe.cli import compare_main

        compare_main(args)
    else:
        from wespe.cli import cli_main

        cli_main()


if __name__ == "__main__":
    main()
