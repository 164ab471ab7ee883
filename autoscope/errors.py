"""Errors a user can cause: the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """Bad input from the user (recipe, override, file, slide): printed as one clear line."""
