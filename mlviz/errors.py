"""Errors a user can fix: the CLI turns them into one line and exit code 2, never a traceback."""


class MlvizError(Exception):
    """Bad input or an unusable store; the message is shown to the user as is."""
