"""Errors raised by the SDK. Every failure raises: the SDK never answers "allowed" on its own."""
from __future__ import annotations


class PolicyGridError(Exception):
    """Base class of everything the SDK raises."""


class PolicyGridApiError(PolicyGridError):
    """A failure in the contract's terms: HTTP status, machine `code` and a message for a person.

    Raised for the server's failure envelope and, with the same codes, for failures found
    locally (e.g. a retired policy held by a local evaluator answers 410 ``retired``).
    """

    def __init__(self, status: int, code: str, message: str, errors: list | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []


class ServerUnreachableError(PolicyGridApiError):
    """The server could not be reached (refused, timed out, DNS): calls fail closed."""

    def __init__(self, server: str, reason: str):
        super().__init__(503, "backend_unavailable", f"cannot reach PolicyGrid at {server}: {reason}")
        self.server = server
        self.reason = reason


class PolicyGridWarning(UserWarning):
    """A warning the server answered a successful call with: something in the request was ignored (a misspelt
    field) or will not work yet (a graph whose functions are not deployed). Turn it into an error with
    ``warnings.simplefilter("error", PolicyGridWarning)``."""
