"""The one error type every codec raises for input it cannot decode or encode."""


class CodecError(ValueError):
    """Base class: a payload or node that the codec cannot handle."""


class DecodeError(CodecError):
    """Malformed or unsupported payload; the message says what and where."""


class EncodeError(CodecError):
    """A node that cannot be expressed in the requested content format."""
