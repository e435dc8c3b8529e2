"""Short-lived signed access tokens (JWT, HS256 with PyJWT).

The token carries the caller's role, institution and learner profile, so authorising a
request costs no database read. That is why it lives 15 minutes: revocation happens on
the refresh token, which is stored and checked on every refresh.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import jwt
from aiohttp import web

from lms_domain.access import Actor
from lms_domain.errors import Unauthenticated
from lms_domain.tenancy.models import Role
from server.auth.verified import LEEWAY_S
from server.keys import clock_key, settings_key, verified_tokens_key

ISSUER = "somo"
ALGORITHM = "HS256"


def issue_access_token(*, actor: Actor, secret: str, now: datetime, ttl: timedelta) -> str:
    claims = {
        "iss": ISSUER,
        "typ": "access",
        "sub": str(actor.user_id),
        "role": actor.role.value,
        "inst": str(actor.institution_id) if actor.institution_id else None,
        "lrn": str(actor.learner_id) if actor.learner_id else None,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access_token(token: str, *, secret: str, now: datetime) -> tuple[Actor, int]:
    """Checks expiry against the app's clock (not the OS clock PyJWT would use), so an edge
    node and its tests agree with themselves about what "now" is."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "role"], "verify_exp": False, "verify_iat": False},
        )
        if claims.get("typ") != "access":
            raise jwt.InvalidTokenError("not an access token")
        if int(claims["exp"]) + LEEWAY_S < now.timestamp():
            raise jwt.ExpiredSignatureError("expired")
        actor = Actor(
            user_id=uuid.UUID(claims["sub"]),
            role=Role(claims["role"]),
            institution_id=uuid.UUID(claims["inst"]) if claims.get("inst") else None,
            learner_id=uuid.UUID(claims["lrn"]) if claims.get("lrn") else None,
        )
        return actor, int(claims["exp"])
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the access token has expired; refresh it", code="token_expired") from None
    except (jwt.InvalidTokenError, ValueError, KeyError):
        raise Unauthenticated("the access token is not valid", code="invalid_token") from None


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use Authorization: Bearer <access token>", code="invalid_token")
    return token.strip()


def actor_from_request(request: web.Request) -> Actor | None:
    token = bearer_token(request)
    if token is None:
        return None
    now = request.app[clock_key].now()
    cache = request.app[verified_tokens_key]
    actor = cache.get(token, now)
    if actor is None:
        actor, expires = decode_access_token(
            token, secret=request.app[settings_key].security.secret_key.get_secret_value(), now=now
        )
        cache.put(token, actor, expires)
    return actor
