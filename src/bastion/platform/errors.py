"""The service layer's exception family. Messages are for administrators: what, and what to do."""

from __future__ import annotations


class ServiceError(Exception):
    """A use case was refused. Web and CLI adapters map subclasses to status codes.

    Nothing a refused use case changed is kept, except its record of the refusal
    (an audit entry, a failed sign-in counted): a service that wrote only that
    raises with ``recorded=True``, and the unit of work commits it.
    """

    def __init__(self, message: str = "", *, recorded: bool = False) -> None:
        super().__init__(message)
        self.recorded = recorded


class InvalidInputError(ServiceError):
    pass


class NotFoundError(ServiceError):
    pass


class ConflictError(ServiceError):
    pass


class PermissionDeniedError(ServiceError):
    pass


class AuthenticationError(ServiceError):
    pass


class ThrottledError(ServiceError):
    def __init__(self, message: str, retry_after: float, *, recorded: bool = False) -> None:
        super().__init__(message, recorded=recorded)
        self.retry_after = retry_after


class SessionEndedError(AuthenticationError):
    pass


class UnavailableError(ServiceError):
    pass
