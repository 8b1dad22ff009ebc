"""Rekognition's errors, named exactly as AWS names them.

The service layer raises these; the API layer turns them into ``{"__type", "Message"}``
with the status below. Only ``InternalServerError`` is a 5xx: it means a bug.
"""

from __future__ import annotations


class RekognitionError(Exception):
    """Base: ``code`` is the wire ``__type``; ``status`` the HTTP status."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> str:
        return type(self).__name__


class AccessDeniedException(RekognitionError):
    """Refused by policy; the message names the policy and the reason."""


class ConflictException(RekognitionError):
    pass


class IdempotentParameterMismatchException(RekognitionError):
    """A ClientRequestToken was reused with different parameters."""


class ImageTooLargeException(RekognitionError):
    pass


class InternalServerError(RekognitionError):
    status = 500


class InvalidImageFormatException(RekognitionError):
    pass


class InvalidPaginationTokenException(RekognitionError):
    pass


class InvalidParameterException(RekognitionError):
    pass


class InvalidS3ObjectException(RekognitionError):
    pass


class LimitExceededException(RekognitionError):
    pass


class ProvisionedThroughputExceededException(RekognitionError):
    pass


class ResourceAlreadyExistsException(RekognitionError):
    pass


class ResourceInUseException(RekognitionError):
    pass


class ResourceNotFoundException(RekognitionError):
    pass


class ServiceQuotaExceededException(RekognitionError):
    pass


class ThrottlingException(RekognitionError):
    pass


class UnsupportedOperationException(RekognitionError):
    """An operation in Rekognition's model that facegate does not implement (video, labels, ...)."""
