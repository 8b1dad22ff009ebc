"""Errors that only the wire layer can raise: authentication and framing, named as AWS names them."""

from __future__ import annotations

from facegate.service.exceptions import RekognitionError


class MissingAuthenticationTokenException(RekognitionError):
    """No Authorization header at all."""


class IncompleteSignatureException(RekognitionError):
    """An Authorization header (or X-Amz-Date) that is not a complete SigV4 signature."""


class UnrecognizedClientException(RekognitionError):
    """The access key id is unknown or revoked."""


class InvalidSignatureException(RekognitionError):
    """The signature does not match, or it was made more than 15 minutes from now."""


class SerializationException(RekognitionError):
    """The body is not a JSON object."""


class UnknownOperationException(RekognitionError):
    """The X-Amz-Target header names no Rekognition operation."""
