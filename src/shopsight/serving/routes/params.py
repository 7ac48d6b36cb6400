"""Parameters and dependencies shared by several routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials

from shopsight.serving import schemas as S
from shopsight.serving.auth import bearer, check_token
from shopsight.serving.runtime import get_runtime


def require_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    check_token(get_runtime(request).token, creds)


Auth = [Depends(require_token)]

KQ = Annotated[int, Query(ge=1, le=S.MAX_K, description="How many items.")]
CategoryQ = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=S.MAX_ID,
        description="Only items in this category (full path, leading sub-path or one segment).",
    ),
]
PriceQ = Annotated[
    float | None, Query(ge=0, le=1e12, allow_inf_nan=False, description="Only items this cheap.")
]
UserP = Annotated[str, PathParam(min_length=1, max_length=S.MAX_ID)]
ItemP = Annotated[str, PathParam(min_length=1, max_length=S.MAX_ID)]
