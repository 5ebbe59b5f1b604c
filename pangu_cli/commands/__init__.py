"""Command modules; importing one registers its commands on `pangu_cli.cli.app`."""

from pangu_cli.commands import clean, data, info, train  # noqa: F401
