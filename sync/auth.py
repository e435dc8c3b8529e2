"""Node credentials: an Ed25519 key pair, signed nonces, and short-lived sync tokens.

The node never sends its private key anywhere; it signs a nonce the central server minted,
and gets a token that lives 15 minutes *by the central server's clock*: the node is told
"expires in N seconds" and never compares the expiry with its own clock, so a school server
whose clock is a day out still syncs. Nonces are stateless (an HMAC of node id and time),
valid for 60 seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lms_domain.errors import InvalidInput, Unauthenticated

NONCE_LIFETIME = timedelta(seconds=60)
TOKEN_LIFETIME = timedelta(minutes=15)
ISSUER = "somo-sync"
ALGORITHM = "HS256"


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the node key is not an Ed25519 key")
    return key


def public_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def check_public_key(text: str) -> str:
    try:
        raw = base64.b64decode(text, validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        raise InvalidInput("public_key must be a base64 raw Ed25519 public key", code="invalid_public_key") from None
    return text


def sign(key: Ed25519PrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode())).decode()


def verify(public_key: str, message: str, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key)).verify(
            base64.b64decode(signature, validate=True), message.encode()
        )
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _mac(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]


def issue_nonce(secret: str, node_id: uuid.UUID, now: datetime) -> str:
    body = f"{node_id.hex}.{int(now.timestamp() * 1000)}"
    return f"{body}.{_mac(secret, body)}"


def check_nonce(secret: str, nonce: str, node_id: uuid.UUID, now: datetime) -> None:
    body, _, mac = nonce.rpartition(".")
    node_hex, _, millis = body.partition(".")
    if not hmac.compare_digest(mac, _mac(secret, body)) or node_hex != node_id.hex or not millis.isdigit():
        raise Unauthenticated("the nonce is not one this server issued for this node", code="invalid_nonce")
    age = now.timestamp() * 1000 - int(millis)
    if age > NONCE_LIFETIME.total_seconds() * 1000 or age < -5_000:
        raise Unauthenticated("the nonce has expired; ask for a new one", code="invalid_nonce")


@dataclass(frozen=True)
class NodeClaims:
    node_id: uuid.UUID
    institution_id: uuid.UUID


def issue_token(secret: str, claims: NodeClaims, now: datetime) -> tuple[str, int]:
    expires = now + TOKEN_LIFETIME
    token = jwt.encode(
        {
            "iss": ISSUER,
            "typ": "node",
            "sub": str(claims.node_id),
            "inst": str(claims.institution_id),
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        },
        secret,
        algorithm=ALGORITHM,
    )
    return token, int(TOKEN_LIFETIME.total_seconds())


def decode_token(token: str, secret: str, now: datetime) -> NodeClaims:
    """Expiry judged by this server's clock (the one that issued it)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "inst"], "verify_exp": False, "verify_iat": False},
        )
        if claims.get("typ") != "node":
            raise jwt.InvalidTokenError("not a node token")
        if int(claims["exp"]) < now.timestamp():
            raise Unauthenticated("the sync token has expired", code="token_expired")
        return NodeClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["inst"]))
    except (jwt.InvalidTokenError, ValueError, KeyError):
        raise Unauthenticated("the sync token is not valid", code="invalid_token") from None
