"""The kit's user-facing error: one clear line, no traceback (the CLI prints it and exits non-zero)."""


class CKDError(Exception):
    """A problem with the user's input or environment, explained in one line."""
