"""The server's errors in the OpenAI shape, built in one place: `APIError` (a status, a message,
the field at fault) and one constructor per kind. Every module of server/ raises these; app.py turns
them into responses. Standard library only."""

from __future__ import annotations


class APIError(Exception):
    """A request the server answers with an error: the status, and the OpenAI error shape."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unsupported(param: str, why: str = "") -> APIError:
    return bad_request(f"'{param}' is not supported by this server{why}; remove it from the request.",
                       param=param, code="unsupported_parameter")


def unauthorized() -> APIError:
    return APIError(401, "Missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                    "(or 'x-api-key: <key>').",
                    type="authentication_error", code="invalid_api_key")


def model_not_found(name: str, served: str) -> APIError:
    return APIError(404, f"The model {name!r} does not exist here; this server runs {served!r} (see GET /v1/models).",
                    param="model", code="model_not_found")


def not_found(path: str) -> APIError:
    return APIError(404, f"No route {path}; see /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages, "
                    "/v1/models, "
                    "/health, /metrics.",
                    code="not_found")


def too_large(limit_bytes: int) -> APIError:
    return APIError(413, f"The request body is over {limit_bytes} bytes; send a shorter one.", code="request_too_large")


def queue_full(retry_after_s: int) -> APIError:
    return APIError(429, "The server is at its concurrency and queue limits; retry shortly.", type="rate_limit_error",
                    code="queue_full", headers={"Retry-After": str(retry_after_s)})


def unavailable(message: str, code: str, retry_after_s: int = 1) -> APIError:
    return APIError(503, message, type="server_error", code=code, headers={"Retry-After": str(retry_after_s)})


def server_error(message: str) -> APIError:
    return APIError(500, message, type="server_error", code="internal_error")
