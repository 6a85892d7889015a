"""OVH-style error answers.

The API answers errors in two shapes, and python-ovh reads only the status and ``errorCode``:

- auth errors: ``{"errorCode": "INVALID_SIGNATURE", "httpCode": "400 Bad Request", "message": ...}``;
- the rest: ``{"class": "Client::BadRequest", "message": ...}``.

python-ovh turns 400 into ``BadParametersError``, 404 ``ResourceNotFoundError``, 409
``ResourceConflictError``, 403 + errorCode into the exception of that name, anything else
(403 without a known code, 429, 5xx) into ``APIError``.
"""

from __future__ import annotations

from http import HTTPStatus


class OvhError(Exception):
    """An error answer of the OVH surface; raised anywhere under a request, rendered once."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_code: str | None = None,
        error_class: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.error_class = error_class or _DEFAULT_CLASS.get(status, "Server::InternalServerError")
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        if self.error_code:
            phrase = HTTPStatus(self.status).phrase
            return {"errorCode": self.error_code, "httpCode": f"{self.status} {phrase}", "message": self.message}
        return {"class": self.error_class, "message": self.message}


_DEFAULT_CLASS = {
    400: "Client::BadRequest",
    403: "Client::Forbidden",
    404: "Client::NotFound",
    409: "Client::Conflict::AlreadyExists",
    413: "Client::RequestEntityTooLarge",
    429: "Client::TooManyRequests",
    500: "Server::InternalServerError",
    501: "Server::NotImplemented",
    502: "Server::BadGateway",
    503: "Server::ServiceUnavailable",
}


def bad_request(message: str) -> OvhError:
    return OvhError(400, message)


def not_found(what: str, value: object) -> OvhError:
    return OvhError(404, f"The requested object ({what} = {value}) does not exist")
