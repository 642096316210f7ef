"""Errors users can act on: the CLIs print them as one line and exit non-zero."""


class CartoonError(Exception):
    """Base class; the message names the problem and the fix."""


class ModelError(CartoonError):
    """A model file is missing, corrupt, or not what was expected."""


class BackendError(CartoonError):
    """An inference backend is not installed or cannot run the request."""


class InputError(CartoonError):
    """An input image or video cannot be used."""


class OutputError(CartoonError):
    """An output cannot be written (a full disk, a read-only folder, no such encoder)."""
