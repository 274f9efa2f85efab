"""PII redaction: table-driven true and false positives, and records stay valid."""

from __future__ import annotations

import json

import pytest

from services.datastore.pipeline.redact import Redactor, iban_ok, luhn_ok, redact_records
from services.domain.records import LogRecord
from tests.factories import chat_record_dict, tool_record_dict


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe@bank.example.com now", "mail [REDACTED:EMAIL] now"),
        ("card 4111 1111 1111 1111 ok", "card [REDACTED:PAYMENT_CARD] ok"),
        ("card 4111-1111-1111-1111", "card [REDACTED:PAYMENT_CARD]"),
        ("order 4111 1111 1111 1112 (fails Luhn)", "order 4111 1111 1111 1112 (fails Luhn)"),
        ("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN [REDACTED:IBAN] please"),
        ("IBAN DE89370400440532013000", "IBAN [REDACTED:IBAN]"),
        ("not an IBAN GB00 WEST 1234 5698 7654 32", "not an IBAN GB00 WEST 1234 5698 7654 32"),
        ("SSN 123-45-6789.", "SSN [REDACTED:US_SSN]."),
        ("SSN-like 000-12-3456", "SSN-like 000-12-3456"),
        ("call +1 415 555 0134 today", "call [REDACTED:PHONE] today"),
        ("call (212) 555-0198", "call [REDACTED:PHONE]"),
        ("call 020 7946 0958", "call [REDACTED:PHONE]"),
        ("Revenue rose 12,345,678 in 2024", "Revenue rose 12,345,678 in 2024"),
        ("CUSIP 037833100 and ISIN US0378331005", "CUSIP 037833100 and ISIN US0378331005"),
        ("EPS $1.52 vs $1.43 est., 3.5% yield", "EPS $1.52 vs $1.43 est., 3.5% yield"),
    ],
)
def test_builtin_kinds(text: str, expected: str) -> None:
    from collections import Counter

    assert Redactor().text(text, Counter()) == expected


def test_user_patterns_from_config() -> None:
    from collections import Counter

    counts: Counter[str] = Counter()
    out = Redactor({"account_id": r"\bACC-\d{6}\b"}).text("moved ACC-123456 to ACC-654321", counts)
    assert out == "moved [REDACTED:ACCOUNT_ID] to [REDACTED:ACCOUNT_ID]"
    assert counts == {"account_id": 2}


def test_records_are_redacted_everywhere_and_counted() -> None:
    chat = chat_record_dict()
    chat["request"]["messages"][1]["content"] = "Client jane@corp.com asked about 4111111111111111"
    tool = tool_record_dict()
    tool["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = json.dumps(
        {"ticker": "AAPL", "notify": "bob@corp.com"}
    )
    clean = chat_record_dict(timestamp=7)
    records = [LogRecord.model_validate(d) for d in (chat, tool, clean)]
    stream, report = redact_records(records)
    out = list(stream)
    assert report.to_json() == {"records_changed": 2, "counts": {"email": 2, "payment_card": 1}}
    assert out[0].request.messages[1].text == "Client [REDACTED:EMAIL] asked about [REDACTED:PAYMENT_CARD]"  # type: ignore[union-attr]
    args = json.loads(out[1].response.choices[0].message.tool_calls[0].function.arguments)  # type: ignore[union-attr]
    assert args == {"ticker": "AAPL", "notify": "[REDACTED:EMAIL]"}
    assert out[2] is records[2]


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
