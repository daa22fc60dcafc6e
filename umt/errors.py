"""Errors that are the user's to fix: the CLI prints them as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input (a file, an argument, a checkpoint).

    The message names the thing and the problem, e.g. ``"scores/a.mxl: not a zip archive"``.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = message
        """The message without the path: for reports that already list the path beside it."""
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(UserError):
    """An input file is unreadable, corrupt, empty, hostile or mismatched."""


class CheckpointError(UserError):
    """A checkpoint or tokenizer folder is missing, corrupt or does not match."""
