"""Errors that services raise when a request cannot be carried out.

Services know nothing about HTTP; ``config.api.errors`` maps each class to a
status code and the API's error envelope.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; ``message`` is a sentence a user can act on."""

    code = "error"

    def __init__(self, message: str, details: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class Invalid(ServiceError):
    """The input breaks a rule; ``details`` maps field -> messages (HTTP 422)."""

    code = "validation_error"


class Conflict(ServiceError):
    """The request clashes with existing state (HTTP 409)."""

    code = "conflict"


class PayloadTooLarge(ServiceError):
    """A payload or request body is over its size limit (HTTP 413)."""

    code = "payload_too_large"
