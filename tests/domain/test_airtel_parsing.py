"""Airtel Money domain facts without I/O: callback parsing, the ``hash`` candidates, the code
classes, enquiry answers and the field rules (``shared/reference/airtel.md``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lms_domain.errors import InvalidInput
from lms_domain.money import Money
from lms_domain.payments.airtel import (
    ALL_HASH_CANDIDATES,
    AirtelTxStatus,
    HashCandidate,
    airtel_amount,
    airtel_callback_key,
    airtel_hmac,
    airtel_msisdn,
    classify_airtel_code,
    failure_class_of,
    hash_inputs,
    is_pending_code,
    match_callback_hash,
    parse_airtel_callback,
    parse_enquiry,
    verify_callback_hash,
)
from lms_domain.payments.models import FailureClass

SECRET = "portal-callback-secret"
DOCS_SAMPLE = b"""{
  "transaction": {
    "id": "BBZMiscxy",
    "message": "Paid UGX 5,000 to TECHNOLOGIES LIMITED Charge UGX 140, Trans ID MP210603.1234.L06941.",
    "status_code": "TS",
    "airtel_money_id": "MP210603.1234.L06941"
  }
}"""
# What JSON.stringify({transaction}) gives for the §4.2 sample: compact, key order as sent.
COMPACT_42 = (
    '{"transaction":{"id":"BBZMiscxy","message":"Paid UGX 5,000 to TECH LIMITED, Trans ID MP210603.1234.L06941.",'
    '"status_code":"TS","airtel_money_id":"MP210603.1234.L06941"}}'
)


def reference_hmac(message: str | bytes, secret: str = SECRET) -> str:
    """HMAC-SHA256 -> Base64, written out here independently of the module under test."""
    raw = message.encode() if isinstance(message, str) else message
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def signed_42(signature: str, *, hash_first: bool = False) -> bytes:
    """The §4.2 sample as Airtel would post it, pretty-printed, with ``hash`` last or first."""
    transaction = json.loads(COMPACT_42)["transaction"]
    payload: dict[str, Any] = {"hash": signature, "transaction": transaction} if hash_first else {}
    payload.update({"transaction": transaction, "hash": signature})
    return json.dumps(payload, indent=2).encode()


# ---- callback parsing ----


def test_the_docs_sample_parses() -> None:
    callback = parse_airtel_callback(DOCS_SAMPLE)
    assert callback.transaction_id == "BBZMiscxy"
    assert callback.status is AirtelTxStatus.SUCCESS
    assert callback.airtel_money_id == "MP210603.1234.L06941"
    assert callback.message.startswith("Paid UGX 5,000")
    assert callback.hash is None and callback.code is None
    assert callback.failure_class is None and callback.dedupe_key == "BBZMiscxy:TS"
    assert airtel_callback_key(DOCS_SAMPLE) == "BBZMiscxy"


def test_a_hashed_failure_with_extra_keys_parses() -> None:
    body = json.dumps(
        {
            "transaction": {
                "id": "9f1c2a7e",
                "message": "Not enough balance",
                "status_code": "TF",
                "airtel_money_id": None,
                "code": "DP00800001007",
                "new_field": {"x": 1},
            },
            "hash": "zITVAAGYSlzl1WkUQJn81kbpT5drH3koffT8jCkcJJA=",
            "unknown": [1, 2],
        }
    ).encode()
    callback = parse_airtel_callback(body)
    assert callback.status is AirtelTxStatus.FAILED and callback.airtel_money_id is None
    assert callback.code == "DP00800001007" and callback.failure_class is FailureClass.CUSTOMER
    assert callback.hash == "zITVAAGYSlzl1WkUQJn81kbpT5drH3koffT8jCkcJJA="
    # A TF after a TS is a different event for the inbox, never a duplicate.
    assert callback.dedupe_key == "9f1c2a7e:TF"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "airtel_callback_not_json"),
        (b"\xff\xfe\x00", "airtel_callback_not_json"),
        (b"status=TS", "airtel_callback_not_json"),
        (b"[]", "airtel_callback_malformed"),
        (b'{"Body": {"stkCallback": {}}}', "airtel_callback_malformed"),
        (b'{"transaction": "TS"}', "airtel_callback_malformed"),
        (b'{"transaction": {"status_code": "TS"}}', "airtel_callback_malformed"),
        (b'{"transaction": {"id": false, "status_code": "TS"}}', "airtel_callback_malformed"),
        (b'{"transaction": {"id": "  ", "status_code": "TS"}}', "airtel_callback_malformed"),
        (b'{"transaction": {"id": "a", "status_code": "OK"}}', "airtel_callback_malformed"),
        (b'{"transaction": {"id": "a", "status_code": 1}}', "airtel_callback_malformed"),
        (b'{"transaction": {"id": "a"}}', "airtel_callback_malformed"),
    ],
)
def test_bad_bodies_are_invalid_input(body: bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_airtel_callback(body)
    assert caught.value.code == code


def test_the_key_needs_only_the_id() -> None:
    assert airtel_callback_key(b'{"transaction": {"id": 12345, "status_code": "??"}}') == "12345"
    with pytest.raises(InvalidInput):
        airtel_callback_key(b'{"transaction": {"id": "' + b"x" * 129 + b'"}}')


# ---- the hash (§4.3) ----


def test_compact_transaction_json_matches_an_independent_vector() -> None:
    body = signed_42(reference_hmac(COMPACT_42))
    assert hash_inputs(body)[HashCandidate.TRANSACTION_JSON] == COMPACT_42.encode()
    assert match_callback_hash(body, SECRET) is HashCandidate.TRANSACTION_JSON
    assert verify_callback_hash(body, SECRET)
    assert airtel_hmac(COMPACT_42.encode(), SECRET) == reference_hmac(COMPACT_42)


@pytest.mark.parametrize("hash_first", [False, True], ids=["hash-last", "hash-first"])
def test_the_raw_body_without_its_hash_member_is_a_candidate(hash_first: bool) -> None:
    # Airtel would have signed the body it sent, before adding "hash": whitespace and all.
    unsigned = json.dumps({"transaction": json.loads(COMPACT_42)["transaction"]}, indent=2)
    body = signed_42(reference_hmac(unsigned), hash_first=hash_first)
    assert hash_inputs(body)[HashCandidate.RAW_BODY_WITHOUT_HASH] == unsigned.encode()
    assert match_callback_hash(body, SECRET) is HashCandidate.RAW_BODY_WITHOUT_HASH
    # The compact form differs from the pretty one, so only the raw candidate can match.
    assert not verify_callback_hash(body, SECRET, candidates=[HashCandidate.TRANSACTION_JSON])


def test_the_exact_raw_body_is_tried_as_received() -> None:
    body = signed_42("irrelevant")
    assert hash_inputs(body)[HashCandidate.RAW_BODY] == body
    assert hash_inputs(b"not json") == {HashCandidate.RAW_BODY: b"not json"}
    assert set(hash_inputs(body)) == set(ALL_HASH_CANDIDATES)


def test_key_order_is_kept_as_received() -> None:
    transaction = {"status_code": "TS", "id": "abc", "airtel_money_id": "MP1", "message": "Paid"}
    in_order = json.dumps({"transaction": transaction}, separators=(",", ":"))
    sorted_keys = json.dumps({"transaction": transaction}, separators=(",", ":"), sort_keys=True)
    assert verify_callback_hash(
        json.dumps({"transaction": transaction, "hash": reference_hmac(in_order)}).encode(), SECRET
    )
    assert not verify_callback_hash(
        json.dumps({"transaction": transaction, "hash": reference_hmac(sorted_keys)}).encode(), SECRET
    )


def test_non_ascii_is_signed_unescaped_like_json_stringify() -> None:
    compact = '{"transaction":{"id":"t-1","message":"Umelipa KES 1,000 — asante","status_code":"TS"}}'
    body = json.dumps({"transaction": json.loads(compact)["transaction"], "hash": reference_hmac(compact)}).encode()
    assert b"\\u2014" in body  # escaped on the wire, signed unescaped
    assert match_callback_hash(body, SECRET) is HashCandidate.TRANSACTION_JSON


def test_a_nested_hash_field_is_not_mistaken_for_the_signature_member() -> None:
    transaction = {"id": "t-1", "status_code": "TS", "hash": "inner"}
    unsigned = json.dumps({"transaction": transaction})
    body = json.dumps({"transaction": transaction, "hash": reference_hmac(unsigned)}).encode()
    assert hash_inputs(body)[HashCandidate.RAW_BODY_WITHOUT_HASH] == unsigned.encode()
    assert match_callback_hash(body, SECRET) is HashCandidate.RAW_BODY_WITHOUT_HASH


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body: body.replace(b'"TS"', b'"TF"'),
        lambda body: body.replace(b"BBZMiscxy", b"BBZMiscxz"),
        lambda body: body.replace(b"5,000", b"9,000"),
    ],
    ids=["status", "id", "message"],
)
def test_a_tampered_body_fails(tamper: Any) -> None:
    body = signed_42(reference_hmac(COMPACT_42))
    assert verify_callback_hash(body, SECRET)
    assert not verify_callback_hash(tamper(body), SECRET)


def test_wrong_secret_missing_or_odd_hash_fail_without_raising() -> None:
    body = signed_42(reference_hmac(COMPACT_42))
    assert not verify_callback_hash(body, "another-secret")
    assert not verify_callback_hash(body, "")
    assert not verify_callback_hash(DOCS_SAMPLE, SECRET)  # no hash at all
    assert not verify_callback_hash(body.replace(b'"hash"', b'"Hash"'), SECRET)
    assert not verify_callback_hash(json.dumps({"transaction": {}, "hash": 5}).encode(), SECRET)
    assert not verify_callback_hash(b"\x00garbage", SECRET)


# ---- codes (§7) ----


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        ("DP00800001001", None),
        ("DP00900001001", None),
        ("ESB000010", None),
        ("DP00800001002", FailureClass.CUSTOMER),
        ("DP00800001003", FailureClass.CUSTOMER),
        ("DP00800001004", FailureClass.CONFIGURATION),
        ("DP00800001005", FailureClass.CUSTOMER),
        ("DP00800001007", FailureClass.CUSTOMER),
        ("DP00800001008", FailureClass.CUSTOMER),
        ("DP00800001009", FailureClass.CUSTOMER),
        ("DP00800001010", FailureClass.CONFIGURATION),
        ("DP00800001024", FailureClass.TRANSIENT),
        ("DP00800001026", FailureClass.CONFIGURATION),
        ("DP00800001029", FailureClass.TRANSIENT),
        ("ESB000008", FailureClass.CONFIGURATION),
        ("ESB000033", FailureClass.CONFIGURATION),
        ("ESB000041", FailureClass.CONFIGURATION),
        ("ESB000045", FailureClass.TRANSIENT),
        ("esb000014", FailureClass.TRANSIENT),
        ("ROUTER006", FailureClass.CONFIGURATION),
        ("ROUTER112", FailureClass.CONFIGURATION),
        ("ROUTER116", FailureClass.CONFIGURATION),
        ("DP99999999999", FailureClass.TRANSIENT),  # unknown: logged, retried
        (None, FailureClass.TRANSIENT),
    ],
)
def test_code_classes(code: str | None, failure: FailureClass | None) -> None:
    assert classify_airtel_code(code) is failure


def test_pending_codes_are_not_failures_by_themselves() -> None:
    assert all(is_pending_code(c) for c in ("DP00800001000", "DP00800001006", "DP00800001025"))
    assert not is_pending_code("DP00800001001") and not is_pending_code(None)
    assert failure_class_of(AirtelTxStatus.AMBIGUOUS, "DP00800001000") is None
    assert failure_class_of(AirtelTxStatus.IN_PROGRESS, "DP00800001006") is None
    assert failure_class_of(AirtelTxStatus.SUCCESS, "DP00800001001") is None
    assert failure_class_of(AirtelTxStatus.FAILED, "DP00800001002") is FailureClass.CUSTOMER
    assert failure_class_of(AirtelTxStatus.FAILED, "DP00800001001") is FailureClass.TRANSIENT
    assert failure_class_of(AirtelTxStatus.EXPIRED, None) is FailureClass.TRANSIENT
    assert [s.value for s in AirtelTxStatus if s.is_final] == ["TS", "TF", "TE"]


# ---- enquiry answers (§5) ----


def test_the_documented_enquiry_answers() -> None:
    paid = parse_enquiry(
        {
            "data": {
                "transaction": {
                    "airtel_money_id": "133410367531",
                    "id": "d56afb6b",
                    "message": "Your transaction has been successfully processed",
                    "status": "TS",
                }
            },
            "status": {
                "response_code": "DP00800001001",
                "code": "200",
                "success": True,
                "result_code": "ESB000010",
                "message": "SUCCESS",
            },
        },
        "d56afb6b",
    )
    assert paid.succeeded and paid.airtel_money_id == "133410367531" and paid.failure_class is None
    assert paid.amount_minor is None and paid.response_code == "DP00800001001"

    ambiguous = parse_enquiry(
        {
            "data": {"transaction": {"airtel_money_id": None, "id": "x", "message": "Ambiguous", "status": "TA"}},
            "status": {"code": "200", "result_code": "ESB000010", "response_code": "DP00800001000", "success": False},
        },
        "x",
    )
    assert ambiguous.status is AirtelTxStatus.AMBIGUOUS and ambiguous.airtel_money_id is None
    assert ambiguous.failure_class is None  # ambiguous is never failed


@pytest.mark.parametrize(("amount", "minor"), [(1000, 100_000), ("1000", 100_000), ("10.50", 1050), (None, None)])
def test_an_amount_is_read_when_present(amount: Any, minor: int | None) -> None:
    payload = {"data": {"transaction": {"status": "TS", "amount": amount}}}
    assert parse_enquiry(payload, "t").amount_minor == minor


@pytest.mark.parametrize(
    "payload",
    [{}, {"data": {}}, {"data": {"transaction": {"status": "SUCCESS"}}}, {"data": {"transaction": []}}],
)
def test_an_enquiry_without_a_known_status_is_invalid(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_enquiry(payload, "t")
    assert caught.value.code == "airtel_enquiry_malformed"


# ---- field rules ----


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("+254733123456", "733123456"),
        ("254733123456", "733123456"),
        ("0733123456", "733123456"),
        (" 0733 123 456 ", "733123456"),
        ("0100000001", "100000001"),
        ("0712345678", "712345678"),  # ported numbers: the network is not enforced
    ],
)
def test_msisdns_become_nine_digits(typed: str, sent: str) -> None:
    assert airtel_msisdn(typed) == sent


@pytest.mark.parametrize(
    ("typed", "code"),
    [("0201234567", "airtel_invalid_phone"), ("+256712345678", "airtel_invalid_phone"), ("12", "invalid_phone")],
)
def test_bad_msisdns(typed: str, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        airtel_msisdn(typed)
    assert caught.value.code == code


def test_amounts_are_whole_positive_kes() -> None:
    assert airtel_amount(Money.kes(1)) == 1
    for money, code in [
        (Money.kes(0), "airtel_amount_not_positive"),
        (Money(1050), "airtel_amount_not_whole"),
        (Money(1000, "USD"), "airtel_currency"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            airtel_amount(money)
        assert caught.value.code == code


# ---- properties ----

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
transaction_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none()),
        "status_code": st.one_of(st.sampled_from(["TS", "TF", "TA", "TIP", "TE", "ts", "X"]), json_values),
        "airtel_money_id": json_values,
        "message": json_values,
        "code": json_values,
    },
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"transaction": st.one_of(transaction_like, json_values)}, optional={"hash": json_values}),
)


INVALID_CODES = {"airtel_callback_malformed", "airtel_callback_not_json"}


def parse_or_code(body: bytes) -> str:
    """``"parsed"``, or the code of the ``InvalidInput`` raised; any other exception escapes."""
    try:
        callback = parse_airtel_callback(body)
    except InvalidInput as error:
        return error.code
    assert callback.transaction_id and callback.status in AirtelTxStatus
    assert airtel_callback_key(body) == callback.transaction_id
    return "parsed"


@given(bodies)
def test_parse_never_raises_anything_but_invalid_input(payload: Any) -> None:
    body = json.dumps(payload).encode()
    assert parse_or_code(body) in INVALID_CODES | {"parsed"}
    assert verify_callback_hash(body, SECRET) in (True, False)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_escape_as_another_error(body: bytes) -> None:
    assert parse_or_code(body) in INVALID_CODES | {"parsed"}
    assert verify_callback_hash(body, SECRET) is False


@given(
    st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    st.sampled_from([HashCandidate.RAW_BODY_WITHOUT_HASH, HashCandidate.TRANSACTION_JSON]),
)
def test_what_airtel_signs_is_what_we_verify(transaction: dict[str, Any], mode: HashCandidate) -> None:
    if mode is HashCandidate.TRANSACTION_JSON:
        signed = json.dumps({"transaction": transaction}, separators=(",", ":"), ensure_ascii=False)
    else:
        signed = json.dumps({"transaction": transaction})
    body = json.dumps({"transaction": transaction, "hash": reference_hmac(signed)}).encode()
    assert match_callback_hash(body, SECRET) is mode
