"""User-facing errors: one clear line and exit code 2, never a traceback."""


class UserError(Exception):
    """Bad input or usage. The message says what is wrong and where (file, row, field)."""

    exit_code = 2
