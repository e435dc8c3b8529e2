"""Sign in, refresh and sign out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lms_domain.auth import service
from lms_domain.auth.schemas import RefreshRequest, TokenPair, TokenRequest
from lms_domain.auth.service import IssuedRefreshToken
from lms_domain.errors import Unauthenticated
from lms_domain.tenancy.models import User
from server.api.registry import PUBLIC, Api, Call
from server.auth.tokens import issue_access_token
from server.keys import hasher_key, settings_key

api = Api("auth", description="Bearer tokens: a short-lived access token and a revocable refresh token.")


async def _pair(call: Call[Any, Any], session: Any, user: User, refresh: IssuedRefreshToken) -> TokenPair:
    security = call.app[settings_key].security
    actor = await service.actor_for(session=session, user=user)
    ttl = timedelta(seconds=security.access_token_ttl_s)
    token = issue_access_token(
        actor=actor, secret=security.secret_key.get_secret_value(), now=call.clock.now(), ttl=ttl
    )
    return TokenPair(
        access_token=token,
        expires_in=security.access_token_ttl_s,
        refresh_token=refresh.token,
        refresh_expires_at=refresh.expires_at,
    )


@api.post(
    "/auth/token",
    summary="Sign in with a username or phone and a password",
    body=TokenRequest,
    response=TokenPair,
    auth=PUBLIC,
    extra_responses={429: "Too many failed logins; see Retry-After."},
)
async def create_token(call: Call[TokenRequest, Any]) -> TokenPair:
    """Repeated failures first make the caller wait (429 with Retry-After), then lock the
    account for 15 minutes."""
    hasher = call.app[hasher_key]
    refresh_ttl = timedelta(seconds=call.app[settings_key].security.refresh_token_ttl_s)
    failure: Unauthenticated | None = None
    async with call.uow() as session:
        try:
            user = await service.authenticate(
                session=session, login=call.body.login, password=call.body.password, clock=call.clock, hasher=hasher
            )
        except Unauthenticated as exc:
            failure = exc  # commit the failure counter, then answer 401
        else:
            refresh = await service.issue_refresh_token(
                session=session,
                user=user,
                clock=call.clock,
                ttl=refresh_ttl,
                user_agent=call.request.headers.get("User-Agent"),
            )
            return await _pair(call, session, user, refresh)
    raise failure


@api.post(
    "/auth/refresh",
    summary="Swap a refresh token for a new token pair",
    body=RefreshRequest,
    response=TokenPair,
    auth=PUBLIC,
)
async def refresh_token(call: Call[RefreshRequest, Any]) -> TokenPair:
    """Refresh tokens rotate: each works once. Reusing one revokes its whole family."""
    refresh_ttl = timedelta(seconds=call.app[settings_key].security.refresh_token_ttl_s)
    failure: Unauthenticated | None = None
    async with call.uow() as session:
        try:
            user, refresh = await service.rotate_refresh_token(
                session=session,
                raw=call.body.refresh_token,
                clock=call.clock,
                ttl=refresh_ttl,
                user_agent=call.request.headers.get("User-Agent"),
            )
        except Unauthenticated as exc:
            failure = exc  # keep the family revocation, then answer 401
        else:
            return await _pair(call, session, user, refresh)
    raise failure


@api.post("/auth/logout", summary="Revoke a refresh token", body=RefreshRequest, status=204, auth=PUBLIC)
async def logout(call: Call[RefreshRequest, Any]) -> None:
    async with call.uow() as session:
        await service.revoke_refresh_token(session=session, raw=call.body.refresh_token, clock=call.clock)
