"""The wire format and the splitting of a pull answer into short transactions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from sync.apply import split
from sync.codec import decode_rows, encode_value, encoder_for
from sync.policy import table

tables = st.lists(
    st.tuples(st.sampled_from(["learners", "enrollments", "phones"]), st.lists(st.integers(), max_size=30)),
    max_size=6,
)


@given(chunks=tables, per_part=st.integers(1, 40))
def test_split_keeps_every_row_once_in_order_within_the_limit(
    chunks: list[tuple[str, list[int]]], per_part: int
) -> None:
    document = {"cursor": "1.2", "more": True, "tables": [{"t": t, "c": ["id"], "r": rows} for t, rows in chunks]}

    parts = split(document, per_part)

    assert all(p["cursor"] == "1.2" and p["more"] is True for p in parts)
    assert all(sum(len(c["r"]) for c in p["tables"]) <= per_part for p in parts)
    flattened = [(c["t"], r) for p in parts for c in p["tables"] for r in c["r"]]
    assert flattened == [(t, r) for t, rows in chunks for r in rows]


def test_values_round_trip_through_the_wire_format() -> None:
    learners = table("learners")
    row = {
        "id": uuid.uuid4(),
        "display_name": "Achieng' Otieno",
        "hlc": 123456789,
        "created_at": datetime(2026, 12, 1, 7, 30, 15, 123456, tzinfo=UTC),
        "deleted_at": None,
    }
    columns = list(row)
    encoded = [encode_value(row[c]) for c in columns]

    assert [encoder_for(learners.c[c])(row[c]) for c in columns] == encoded
    assert decode_rows(learners, columns, [encoded]) == [row]
