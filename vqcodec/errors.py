"""Every error vqcodec raises on bad input derives from :class:`VQCodecError`."""


class VQCodecError(Exception):
    """Base class: the CLI turns these into a one-line message and a non-zero exit."""


class BitstreamError(VQCodecError):
    """A .vqc file that cannot be decoded: truncated, corrupted, or not a .vqc file."""


class UnsupportedVersionError(BitstreamError):
    """The file uses a newer format version than this vqcodec understands."""


class ModelMismatchError(VQCodecError):
    """The file was encoded with a different model (or different weights) than the one loaded."""


class ImageError(VQCodecError):
    """An input image that cannot be read or is refused (unknown format, too large, empty)."""


class WeightsError(VQCodecError):
    """Model weights that are missing, corrupt, of the wrong format or fail their checksum."""
