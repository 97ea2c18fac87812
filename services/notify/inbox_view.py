"""How the provider inbox shows an offer and a handoff: pure functions from notify's and intake's data to
labelled rows (no I/O; the pages in ``inbox.py`` render them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notify.domain import OUTCOME_STATES, DeclineReason, Outcome, SafeContactFlag

DECLINE_LABELS = {
    DeclineReason.no_capacity: "We have no capacity for this case now",
    DeclineReason.not_eligible: "The survivor is not eligible for our service",
    DeclineReason.out_of_area: "The survivor is outside the area we serve",
    DeclineReason.other: "Another reason about our service (say which below)",
}
OUTCOME_LABELS = {
    Outcome.contact_made: "Contact made",
    Outcome.unable_to_contact: "Unable to contact",
    Outcome.survivor_engaged: "Survivor engaged with support",
    Outcome.survivor_declined_support: "Survivor declined support",
    Outcome.closed: "Case closed",
}
FLAG_LABELS = {
    SafeContactFlag.do_not_contact: "Do not contact the survivor directly",
    SafeContactFlag.no_voicemail: "Do not leave voicemail",
    SafeContactFlag.no_letters: "Do not send letters",
    SafeContactFlag.no_text_messages: "Do not send text messages",
}
STOP_LABELS = {
    "consent-withdrawn": "Consent withdrawn",
    "referral-cancelled": "Referral cancelled",
}
# Shown with every handoff: naming the service can tell an abuser who is helping.
ALWAYS = "Do not name Pathways or your service until you are sure you are speaking to the survivor alone."


@dataclass(frozen=True)
class Row:
    label: str
    value: str


def words(code: str | None) -> str:
    return (code or "").replace("-", " ").replace("_", " ").strip()


def stop_label(reason: str | None) -> str:
    return STOP_LABELS.get(reason or "", "Withdrawn") if reason else "Withdrawn"


def summary_rows(summary: dict[str, Any]) -> list[Row]:
    """The non-identifying summary an offer carries, in the order a case worker reads it."""
    rows: list[Row] = []
    area = summary.get("area") or {}
    where = area.get("sector") or summary.get("postcode_sector") or summary.get("postcode_district")
    if where:
        rows.append(Row("Postcode sector", str(where)))
    if summary.get("risk_band"):
        rows.append(Row("Risk", f"{words(summary['risk_band'])} risk"))
    if summary.get("setting"):
        rows.append(Row("Referred from", words(summary["setting"])))
    for key, label in (("needs", "Needs"), ("abuse_types", "Abuse disclosed"),
                       ("characteristics", "Characteristics the survivor chose to share")):
        if summary.get(key):
            rows.append(Row(label, ", ".join(words(v) for v in summary[key])))
    for key, label in (("age_band", "Age band"), ("gender", "Gender"), ("language", "Preferred language")):
        if summary.get(key):
            rows.append(Row(label, words(str(summary[key]))))
    preferences = summary.get("preferences") or {}
    if preferences.get("by_and_for") and preferences["by_and_for"] != "no-preference":
        rows.append(Row("By-and-for service", words(preferences["by_and_for"])))
    if preferences.get("worker_gender"):
        rows.append(Row("Preferred worker gender", words(preferences["worker_gender"])))
    return rows


def deadline_text(respond_by: datetime, now: datetime) -> str:
    """The response deadline in words a busy person reads at a glance (the exact time is shown beside it)."""
    seconds = (respond_by - now).total_seconds()
    if seconds <= 0:
        return "deadline passed"
    hours, rest = divmod(int(seconds), 3600)
    if hours >= 48:
        return f"{hours // 24} days left"
    if hours >= 1:
        return f"{hours} h {rest // 60} min left"
    return f"{max(rest // 60, 1)} min left"


def _name(names: Any) -> str | None:
    for name in names or []:
        if not isinstance(name, dict):
            continue
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("prefix", []), *name.get("given", []), name.get("family") or ""]
        joined = " ".join(p for p in parts if p)
        if joined:
            return joined
    return None


def _telecom(entries: Any) -> list[Row]:
    rows = []
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("value"):
            label = words(entry.get("system") or "contact").capitalize()
            if entry.get("use"):
                label += f" ({words(entry['use'])})"
            rows.append(Row(label, str(entry["value"])))
    return rows


def _address(entries: Any) -> list[Row]:
    rows = []
    for entry in entries or []:
        if not isinstance(entry, dict):
            continue
        parts = [*entry.get("line", []), entry.get("city"), entry.get("district"), entry.get("postalCode")]
        text = entry.get("text") or ", ".join(str(p) for p in parts if p)
        if text:
            rows.append(Row("Address" + (f" ({words(entry['use'])})" if entry.get("use") else ""), text))
    return rows


KNOWN = {"name", "birth_date", "gender", "telecom", "address", "nhs_number", "language", "interpreter_required",
         "notes", "referrer", "ethnic_category", "referrer_ods", "dash_yes_count",
         # The case's id is in the page's own links already; it is not about the survivor.
         "case_id"}


def survivor_rows(survivor: dict[str, Any]) -> list[Row]:
    """Who the survivor is and how to reach them (after the safe-contact rules, never before)."""
    rows: list[Row] = []
    if name := _name(survivor.get("name")):
        rows.append(Row("Name", name))
    if survivor.get("birth_date"):
        rows.append(Row("Date of birth", str(survivor["birth_date"])))
    if survivor.get("gender"):
        rows.append(Row("Gender", words(str(survivor["gender"]))))
    rows.extend(_telecom(survivor.get("telecom")))
    rows.extend(_address(survivor.get("address")))
    if survivor.get("language"):
        rows.append(Row("Language", str(survivor["language"])))
    if survivor.get("interpreter_required"):
        rows.append(Row("Interpreter", "required"))
    if survivor.get("nhs_number"):
        rows.append(Row("NHS number", str(survivor["nhs_number"])))
    ethnic = survivor.get("ethnic_category")
    if isinstance(ethnic, dict) and (ethnic.get("text") or ethnic.get("coding")):
        coding = (ethnic.get("coding") or [{}])[0]
        rows.append(Row("Ethnic category (recorded)", str(ethnic.get("text") or coding.get("display") or coding.get("code"))))
    if survivor.get("dash_yes_count") is not None:
        rows.append(Row("DASH checklist", f"{survivor['dash_yes_count']} of 24 answered yes"))
    for note in survivor.get("notes") or []:
        rows.append(Row("Referrer's note", str(note)))
    for key, value in survivor.items():
        if key not in KNOWN and value not in (None, "", [], {}):
            rows.append(Row(words(key).capitalize(), value if isinstance(value, str) else json.dumps(value)))
    return rows


def referrer_rows(survivor: dict[str, Any]) -> list[Row]:
    rows = [Row("Referring organisation (ODS code)", str(survivor["referrer_ods"]))] if survivor.get("referrer_ods") else []
    referrer = survivor.get("referrer")
    if not isinstance(referrer, dict):
        return rows
    if referrer.get("practitioner"):
        rows.append(Row("Referred by", str(referrer["practitioner"])))
    roles = [r for r in referrer.get("role") or [] if r]
    if roles:
        rows.append(Row("Role", ", ".join(roles)))
    rows.extend(_telecom(referrer.get("telecom")))
    if referrer.get("organisation"):
        rows.append(Row("Organisation", str(referrer["organisation"])))
    return rows


def next_outcomes(current: str | None) -> list[Outcome]:
    """The outcomes that may follow the current one (``OUTCOME_STATES``: forwards only)."""
    allowed = OUTCOME_STATES.moves.get(current, frozenset())
    return [o for o in Outcome if o in allowed]
