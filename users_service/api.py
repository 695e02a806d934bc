"""The HTTP endpoints, exactly as the gateway's `app/user_client.py` calls them.

Status codes carry meaning for the caller: 404 means "unknown" (register, or stop), 409 on
registration means "already there, here it is", and 200 instead of 201 on an interaction means
"a replay, nothing was written". Every route declares its responses so the OpenAPI document is
the contract.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from users_service import repository
from users_service.schemas import (
    INT64_MAX,
    INT64_MIN,
    AlreadyRegisteredOut,
    ErrorOut,
    HealthOut,
    InteractionIn,
    InteractionOut,
    RegisterIn,
    UserOut,
    metadata_size,
)
from users_service.security import require_api_key

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "Not found"}}


async def session_dep(request: Request) -> AsyncIterator[AsyncSession]:
    """One session (and transaction) per request, committed only if the handler succeeds."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session, session.begin():
        yield session


# scope="function": the commit (the dependency's teardown) must happen before the response is
# sent. With FastAPI's default ("request") it runs afterwards, and a client that calls again at
# once (register, then log a message) can be told 404 about the user it has just created.
Session = Annotated[AsyncSession, Depends(session_dep, scope="function")]

health_router = APIRouter()
router = APIRouter(
    prefix="/api",
    dependencies=[Depends(require_api_key)],
    responses={401: {"model": ErrorOut, "description": "Missing or wrong X-API-Key"}},
)


@health_router.get("/health", response_model=HealthOut, tags=["health"])
async def health() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/users/by-telegram/{telegram_id}", response_model=UserOut, responses=NOT_FOUND)
async def get_user_by_telegram(
    session: Session,
    telegram_id: Annotated[int, Path(gt=0, le=INT64_MAX)],
) -> UserOut:
    user = await repository.get_user_by_telegram(session, telegram_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    return UserOut.model_validate(user)


@router.post(
    "/users/register",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        409: {
            "model": AlreadyRegisteredOut,
            "description": "This telegram_id is already registered; the existing user is returned",
        }
    },
)
async def register_user(session: Session, body: RegisterIn) -> Any:
    user, created = await repository.register_user(session, body)
    out = UserOut.model_validate(user)
    if created:
        return out
    conflict = AlreadyRegisteredOut(
        detail=f"telegram_id {body.telegram_id} is already registered",
        message="already registered",
        user=out,
    )
    return JSONResponse(conflict.model_dump(mode="json"), status_code=status.HTTP_409_CONFLICT)


@router.get("/users/{user_id}", response_model=UserOut, responses=NOT_FOUND)
async def get_user(session: Session, user_id: uuid.UUID) -> UserOut:
    user = await repository.get_user(session, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    return UserOut.model_validate(user)


@router.post(
    "/interactions",
    response_model=InteractionOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": InteractionOut,
            "description": "Replay of an already stored (user_id, chat_id, telegram_message_id):"
            " the existing row, nothing written",
        },
        **NOT_FOUND,
    },
)
async def log_interaction(
    session: Session, body: InteractionIn, request: Request, response: Response
) -> InteractionOut:
    limit: int = request.app.state.max_metadata_bytes
    if body.metadata is not None and metadata_size(body.metadata) > limit:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body", "metadata"),
                    "msg": f"metadata is larger than {limit} bytes (MAX_METADATA_BYTES)",
                    "ctx": {"max_bytes": limit},
                }
            ]
        )
    user = await repository.get_user(session, body.user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    row, created = await repository.log_interaction(session, user, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return InteractionOut.model_validate(row)


@router.get("/interactions/{user_id}", response_model=list[InteractionOut], responses=NOT_FOUND)
async def list_interactions(
    session: Session,
    user_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size")] = 20,
    before: Annotated[
        int | None,
        Query(gt=0, le=INT64_MAX, description="Keyset cursor: only rows with id < before"),
    ] = None,
    telegram_message_id: Annotated[
        int | None,
        Query(gt=0, le=INT64_MAX, description="Only rows for this Telegram message id"),
    ] = None,
    chat_id: Annotated[
        int | None, Query(ge=INT64_MIN, le=INT64_MAX, description="Only rows of this chat")
    ] = None,
) -> list[InteractionOut]:
    if await repository.get_user(session, user_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    rows = await repository.list_interactions(
        session,
        user_id,
        limit=limit,
        before=before,
        telegram_message_id=telegram_message_id,
        chat_id=chat_id,
    )
    return [InteractionOut.model_validate(row) for row in rows]
