"""User-facing errors: the CLI prints these as one line and exits with `exit_code`."""


class SharpkdError(Exception):
    """A mistake in the user's input (bad file, bad folder, bad option), not a bug."""

    exit_code = 2


class BadImageError(SharpkdError):
    """A file that is not a readable image (corrupt, truncated, empty, too large)."""

    exit_code = 1
