"""Parameters and dependencies shared by several routers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials

from shopsight.serving import schemas as S
from shopsight.serving.auth import bearer, check_token
from shopsight.serving.runtime import get_runtime


def require_admin(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The admin token (checked again here: the middleware decided by path, this by route)."""
    check_token(get_runtime(request).policy, creds)


# Writes and admin: the admin token. Reads: either token; checked by AuthMiddleware before the
# body is read, declared here so that the OpenAPI schema (and /docs) shows the bearer scheme.
Auth = [Depends(require_admin)]
ReadAuth = [Security(bearer)]

KQ = Annotated[int, Query(ge=1, le=S.MAX_K, description="How many items.")]
CategoryQ = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=S.MAX_ID,
        pattern=S.NO_CONTROL,
        description="Only items in this category (full path, leading sub-path or one segment).",
    ),
]
PriceQ = Annotated[
    float | None, Query(ge=0, le=1e12, allow_inf_nan=False, description="Only items this cheap.")
]
UserP = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=S.MAX_ID,
        pattern=S.NO_CONTROL,
        description="A user id as in the events (raw, or its pseudonym in a pseudonymised store).",
    ),
]
ItemP = Annotated[
    str,
    PathParam(min_length=1, max_length=S.MAX_ID, pattern=S.NO_CONTROL, description="An item id."),
]


def links(code: int = 200, **targets: tuple[str, dict[str, str]]) -> dict[int | str, Any]:
    """OpenAPI links from one response to the operations it leads to (operation id, params):
    they document the flows and drive schemathesis' stateful phase."""
    return {
        code: {
            "links": {
                name: {"operationId": op, "parameters": params}
                for name, (op, params) in targets.items()
            }
        }
    }
