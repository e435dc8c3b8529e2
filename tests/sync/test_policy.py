"""Every table is classed exactly once, the classes match the models, and docs/SYNC.md says
what the code does for every table."""

from __future__ import annotations

import re
from pathlib import Path

import lms_domain.models  # noqa: F401 - every table registered
from lms_domain.db import Base
from sync.policy import CENTRAL_ONLY, COMPANIONS, LOCAL_ONLY, POLICIES, Direction, Merge, synced_models

DOC = Path(__file__).resolve().parents[2] / "docs" / "SYNC.md"


def test_every_table_has_exactly_one_class() -> None:
    tables = {t.name for t in Base.metadata.sorted_tables}
    companions = {name for _, name in COMPANIONS.values()}
    classes = [set(POLICIES), set(CENTRAL_ONLY), set(LOCAL_ONLY) & tables, companions]
    assert set().union(*classes) == tables, sorted(tables - set().union(*classes))
    assert sum(len(c) for c in classes) == len(tables), "a table is in two classes"


def test_the_synced_tables_are_exactly_the_versioned_models() -> None:
    assert {m.__tablename__ for m in synced_models()} == set(POLICIES)  # type: ignore[attr-defined]


def test_money_and_credentials_never_travel() -> None:
    for name in ("payments", "payment_intents", "journal_entries", "postings", "webhook_events", "refresh_tokens"):
        assert name in CENTRAL_ONLY
    assert {"password_hash"} <= POLICIES["users"].private
    assert {"pin_hash"} <= POLICIES["learners"].private
    for name in ("subscriptions", "entitlements", "products", "prices"):
        assert POLICIES[name].direction is Direction.DOWN and POLICIES[name].merge is Merge.SERVER


def test_the_document_classes_every_table_as_the_code_does() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| ([a-z-]+) \|", text, flags=re.MULTILINE))
    expected = {name: p.direction.value.replace("_", "-") for name, p in POLICIES.items()}
    expected |= dict.fromkeys(CENTRAL_ONLY, "central-only")
    expected |= {name: "local" for name in LOCAL_ONLY if name in {t.name for t in Base.metadata.sorted_tables}}
    expected |= {name: "companion" for _, name in COMPANIONS.values()}
    assert rows == expected
