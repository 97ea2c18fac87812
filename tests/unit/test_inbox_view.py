"""How the provider inbox shows offers and handoffs (pure functions)."""

from __future__ import annotations

from datetime import timedelta

from services.notify.domain import Outcome
from services.notify.inbox_view import deadline_text, next_outcomes, referrer_rows, summary_rows, survivor_rows
from shared.events import utcnow


def test_the_summary_reads_in_words_and_names_nobody():
    rows = summary_rows({"postcode_sector": "LS7 3", "risk_band": "high", "setting": "emergency-department",
                         "needs": ["children-in-household"], "characteristics": ["deaf"],
                         "preferences": {"by_and_for": "prefer", "worker_gender": None}})
    assert [(r.label, r.value) for r in rows] == [
        ("Postcode sector", "LS7 3"), ("Risk", "high risk"), ("Referred from", "emergency department"),
        ("Needs", "children in household"), ("Characteristics the survivor chose to share", "deaf"),
        ("By-and-for service", "prefer"),
    ]


def test_the_survivor_rows_give_name_contact_and_address_and_the_referrer_apart():
    survivor = {"name": [{"given": ["Sam"], "family": "Synthetic"}], "birth_date": "1985-02-03",
                "telecom": [{"system": "phone", "value": "07700 900000", "use": "mobile"}],
                "address": [{"line": ["2 Test Road"], "postalCode": "LS1 1ZZ"}], "case_id": "c-1",
                "referrer_ods": "Y00001", "notes": ["Prefers a female worker"], "unexpected": {"a": 1}}
    rows = {r.label: r.value for r in survivor_rows(survivor)}
    assert rows["Name"] == "Sam Synthetic" and rows["Phone (mobile)"] == "07700 900000"
    assert rows["Address"] == "2 Test Road, LS1 1ZZ" and rows["Referrer's note"] == "Prefers a female worker"
    assert rows["Unexpected"] == '{"a": 1}'  # nothing intake sends is silently left out
    assert "Case id" not in rows
    assert [(r.label, r.value) for r in referrer_rows(survivor)] == [("Referring organisation (ODS code)", "Y00001")]


def test_outcomes_offered_are_only_the_forward_ones():
    assert next_outcomes(None) == list(Outcome)
    assert next_outcomes("contact-made") == [Outcome.survivor_engaged, Outcome.survivor_declined_support, Outcome.closed]
    assert next_outcomes("closed") == []


def test_deadlines_in_words():
    now = utcnow()
    assert deadline_text(now - timedelta(minutes=1), now) == "deadline passed"
    assert deadline_text(now + timedelta(hours=3, minutes=30), now) == "3 h 30 min left"
    assert deadline_text(now + timedelta(days=5), now) == "5 days left"
