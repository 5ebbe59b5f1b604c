"""Entry point of the `pangu` console script."""

from __future__ import annotations

import os

from pangu_cli import commands  # noqa: F401  (registers every command on the app)
from pangu_cli.cli import app


def main() -> None:
    # The tokenizers library's thread pool does not survive fork; stages that use
    # worker processes parallelise across processes instead.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    main()
