"""Errors users can act on: the CLIs print them as one line and exit non-zero."""


class CartoonError(Exception):
    """Base class; the message names the problem and the fix."""


class ModelError(CartoonError):
    """A model file is missing, corrupt, or not what was expected."""


class BackendError(CartoonError):
    """An inference backend is not installed or cannot run the request."""


class DeviceError(BackendError):
    """The device asked for cannot run here (a driver or a runtime's libraries missing):
    rebuilding the engine would not help."""


class InputError(CartoonError):
    """An input image or video cannot be used."""


class OutputError(CartoonError):
    """An output cannot be written (a full disk, a read-only folder, no such encoder)."""


def first_line(e: BaseException, most: int = 200) -> str:
    """An exception's first line, cut short, or its type where it says nothing: a runtime's
    own message inside one of ours."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:most]


def quoted(value, most: int = 40) -> str:
    """``value`` as a message shows it: its repr, cut short (a request can carry a megabyte
    where a word was expected, and an error must not echo it back)."""
    text = repr(value)
    return text if len(text) <= most else f"{text[:most]}... ({len(str(value))} characters)"
