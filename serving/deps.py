"""FastAPI dependencies: the services, the API key check, the loaded model (its detector pool)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.auth import key_from_headers
from serving.detectors import DetectorPool
from serving.errors import ApiError
from serving.services import Services
from serving.settings import is_loopback

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
_bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


#: headers a proxy adds for the client it relays: a request carrying any of them is not this machine's
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
#: query parameters a client might put a key in; keys are read only from headers
QUERY_KEY_NAMES = ("api_key", "apikey", "key", "token", "access_token")


def require_key(
    request: Request,
    services: ServicesDep,
    x_api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> None:
    """401 without a key (in a header) or with a wrong one. With no keys configured, only
    requests from this machine are served: the connection must come from a loopback address
    and carry none of the proxy headers ``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``
    (403 otherwise)."""
    keys = services.keys
    if not keys.enabled:
        client = request.client.host if request.client else ""
        relayed = [h for h in FORWARDING_HEADERS if h in request.headers]
        if not is_loopback(client) or relayed:
            how = f" (it came through a proxy: {', '.join(relayed)})" if relayed else ""
            raise ApiError(
                403,
                "local_only",
                f"this service has no API keys configured and only serves requests from its own machine{how}",
            )
        return
    key = key_from_headers(f"Bearer {bearer.credentials}" if bearer else None, x_api_key)
    if key is None:
        in_url = any(k in request.query_params for k in QUERY_KEY_NAMES)
        raise ApiError(
            401,
            "missing_api_key",
            ("API keys are not accepted in the URL; " if in_url else "missing API key: ")
            + "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            {"WWW-Authenticate": "Bearer"},
        )
    if not keys.check(key):
        raise ApiError(401, "invalid_api_key", "invalid API key", {"WWW-Authenticate": "Bearer"})


def get_detectors(services: ServicesDep) -> DetectorPool:
    if not services.ready or services.detectors is None:
        detail = services.load_error or "the model is still loading"
        raise ApiError(503, "not_ready", f"not ready: {detail}", {"Retry-After": "5"})
    return services.detectors


DetectorsDep = Annotated[DetectorPool, Depends(get_detectors)]
