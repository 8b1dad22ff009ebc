"""Typed image errors raised by the engine.

The engine knows nothing of HTTP, but each error names the Rekognition exception the
service layer maps it to, so the mapping lives next to the reason it exists.
"""


class ImageRejected(Exception):
    """Base class: the bytes cannot be analysed as a face photo."""

    rekognition_error = "InvalidParameterException"


class InvalidImageFormat(ImageRejected):
    """Not a JPEG or PNG, or a JPEG/PNG that is truncated or corrupt."""

    rekognition_error = "InvalidImageFormatException"


class ImageTooLarge(ImageRejected):
    """Over 5 MB of bytes, or more pixels than we are willing to allocate (a decompression bomb)."""

    rekognition_error = "ImageTooLargeException"


class ImageTooSmall(ImageRejected):
    """Under the 80-pixel minimum dimension that Rekognition documents."""

    rekognition_error = "InvalidParameterException"
