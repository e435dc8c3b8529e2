"""Rows on the wire: compact column-major JSON, gzip both ways, strict on the way in.

A table's rows travel as ``{"t": name, "c": [columns], "r": [[values], ...]}``: the
column names once per batch rather than once per row, UUIDs as 32 hex digits and times as
integer microseconds. With gzip that is what keeps a row under 200 bytes on the wire, where
the systems in ``sync-lessons.md`` spent 1.6 to 4.2 KB. Decoding checks every value's
type against the receiving table, so a malformed batch is refused before it touches a row.
"""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import sqlalchemy as sa

from lms_domain.errors import InvalidInput
from lms_domain.types import UTCDateTime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INFLATED_BYTES = 64 * 1024 * 1024  # a batch is bounded far below this; a gzip bomb is not

Decoder = Callable[[Any], Any]


def encode_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        delta = value.astimezone(UTC) - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, Enum):
        return value.value
    return value  # JSON columns: dicts and lists pass through


def encode_rows(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    return [[encode_value(v) for v in row] for row in rows]


def _uuid_out(value: Any) -> Any:
    return None if value is None else value.hex


def _time_out(value: Any) -> Any:
    if value is None:
        return None
    delta = value.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def encoder_for(column: sa.Column[Any]) -> Callable[[Any], Any]:
    """``encode_value`` specialised to one column's type: no type tests per value."""
    if isinstance(column.type, sa.Uuid):
        return _uuid_out
    if isinstance(column.type, UTCDateTime | sa.DateTime):
        return _time_out
    return _plain


class _Bad(Exception):
    pass


def _uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise _Bad("a UUID as 32 hex digits")
    return uuid.UUID(hex=value)


def _time(value: Any) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Bad("a time as integer microseconds since 1970")
    return EPOCH + timedelta(microseconds=value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Bad("an integer")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _text(limit: int | None) -> Decoder:
    def decode(value: Any) -> str:
        if not isinstance(value, str) or (limit is not None and len(value) > limit):
            raise _Bad(f"a string of at most {limit} characters" if limit else "a string")
        return value

    return decode


def _choice(values: frozenset[str]) -> Decoder:
    def decode(value: Any) -> str:
        if value not in values:
            raise _Bad("one of " + ", ".join(sorted(values)))
        return str(value)

    return decode


def _json(value: Any) -> Any:
    return value


def decoder_for(column: sa.Column[Any]) -> Decoder:
    kind = column.type
    if isinstance(kind, UTCDateTime | sa.DateTime):
        inner: Decoder = _time
    elif isinstance(kind, sa.Uuid):
        inner = _uuid
    elif isinstance(kind, sa.Enum):
        inner = _choice(frozenset(str(v) for v in kind.enums))
    elif isinstance(kind, sa.Boolean):
        inner = _bool
    elif isinstance(kind, sa.Integer):
        inner = _int
    elif isinstance(kind, sa.String):
        inner = _text(kind.length)
    else:
        inner = _json
    if not column.nullable:
        return inner

    def nullable(value: Any) -> Any:
        return None if value is None else inner(value)

    return nullable


def decode_rows(table: sa.Table, columns: Sequence[str], rows: Any) -> list[dict[str, Any]]:
    """Checked parameter dicts for ``table``; ``InvalidInput`` names the first bad value."""
    if not isinstance(rows, list):
        raise InvalidInput(f"{table.name}: rows must be a list", code="malformed_batch")
    decoders = [(name, decoder_for(table.c[name])) for name in columns]
    width = len(decoders)
    out = []
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise InvalidInput(f"{table.name} row {index}: expected {width} values", code="malformed_batch")
        try:
            out.append({name: decode(value) for (name, decode), value in zip(decoders, row, strict=True)})
        except (_Bad, ValueError) as exc:
            raise InvalidInput(f"{table.name} row {index}: a value is not {exc}", code="malformed_batch") from None
    return out


_HEX = frozenset("0123456789abcdef")


def _uuid_stored(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 32 or not _HEX.issuperset(value):
        raise _Bad("a UUID as 32 lowercase hex digits")
    return value


def _time_stored(value: Any) -> str:
    return _time(value).strftime("%Y-%m-%d %H:%M:%S.%f")


def _json_stored(value: Any) -> str:
    return json.dumps(value)


def stored_decoder_for(column: sa.Column[Any]) -> Decoder:
    """``decoder_for``, but straight to what SQLAlchemy stores in SQLite (hex UUIDs, times as
    ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC, JSON text), for an edge applying the feed with the
    driver's own executemany: no Python objects built only to be taken apart again."""
    kind = column.type
    if isinstance(kind, UTCDateTime | sa.DateTime):
        inner: Decoder = _time_stored
    elif isinstance(kind, sa.Uuid):
        inner = _uuid_stored
    elif isinstance(kind, sa.JSON):
        inner = _json_stored
    else:
        return decoder_for(column)
    if not column.nullable:
        return inner

    def nullable(value: Any) -> Any:
        return None if value is None else inner(value)

    return nullable


def decode_stored(table: sa.Table, columns: Sequence[str], rows: Any) -> list[tuple[Any, ...]]:
    """Checked rows for SQLite's executemany, as tuples in ``columns`` order."""
    if not isinstance(rows, list):
        raise InvalidInput(f"{table.name}: rows must be a list", code="malformed_batch")
    decoders = [stored_decoder_for(table.c[name]) for name in columns]
    width = len(decoders)
    out = []
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise InvalidInput(f"{table.name} row {index}: expected {width} values", code="malformed_batch")
        try:
            out.append(tuple([decode(value) for decode, value in zip(decoders, row, strict=True)]))
        except (_Bad, ValueError, OverflowError) as exc:
            raise InvalidInput(f"{table.name} row {index}: a value is not {exc}", code="malformed_batch") from None
    return out


def check_columns(table: sa.Table, columns: Any, allowed: Iterable[str]) -> list[str]:
    allowed_set = set(allowed)
    if (
        not isinstance(columns, list)
        or not columns
        or not all(isinstance(c, str) and c in allowed_set for c in columns)
        or len(set(columns)) != len(columns)
        or "id" not in columns
    ):
        raise InvalidInput(f"{table.name}: unknown, repeated or missing columns", code="malformed_batch")
    return columns


def dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def compress(raw: bytes) -> bytes:
    # Level 6: within a few percent of 9 on these rows at a third of the CPU.
    return gzip.compress(raw, compresslevel=6, mtime=0)


def inflate(body: bytes, *, limit: int = MAX_INFLATED_BYTES) -> bytes:
    """Gunzip with a ceiling, so a small hostile body cannot expand into the server's memory."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise InvalidInput("the body is not valid gzip", code="malformed_batch") from None
    if len(raw) > limit:
        raise InvalidInput("the batch is too large once inflated", code="batch_too_large")
    if not inflater.eof:
        raise InvalidInput("the gzip body is truncated", code="malformed_batch")
    return raw


def loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not valid JSON", code="malformed_batch") from None
