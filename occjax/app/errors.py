"""The page's one error type: a problem with what the user gave, shown on the page as one line."""

from __future__ import annotations


class UserError(ValueError):
    """A bad upload or setting (not an image, no face, a mask of another size, ...): the message
    is one line for the page, naming the file and what to do; never a traceback."""
