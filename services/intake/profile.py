"""The Pathways referral profile in code: every URL, code system and code an EHR may send.

``docs/fhir-referral-profile.md`` documents the same names; keep the two in step. Where FHIR R4 or UK
Core has an element or extension for something, the profile uses it; the project's own extensions live
under ``shared.fhir.CANONICAL`` and are all listed here.
"""

from __future__ import annotations

from shared.events import ConsentScope
from shared.fhir import CANONICAL, code_system, extension_url
from shared.reference import AbuseType

# Project extensions on ServiceRequest.
EXT_SETTING = extension_url("care-setting")
EXT_CHARACTERISTIC = extension_url("shared-characteristic")
EXT_BY_AND_FOR = extension_url("by-and-for-preference")
EXT_WORKER_GENDER = extension_url("worker-gender-preference")
EXT_DECLINED_SERVICE_TYPE = extension_url("declined-service-type")
EXT_NEED = extension_url("need")
EXT_SAFEGUARDING = extension_url("safeguarding-basis")
EXT_SAFE_CONTACT = extension_url("safe-contact")
EXT_CANCELLATION_REASON = extension_url("cancellation-reason")
# Sub-extensions of safe-contact, with the value type each carries.
SAFE_CONTACT_PARTS = {
    "safe-number": "String",
    "safe-times": "String",
    "voicemail-allowed": "Boolean",
    "letters-allowed": "Boolean",
    "may-name-service": "Boolean",
    "do-not-contact": "Boolean",
}
# Project extensions on RiskAssessment (and, for the two flags, on the DASH QuestionnaireResponse).
EXT_DASH_YES = extension_url("dash-yes-count")
EXT_JUDGEMENT = extension_url("professional-judgement")
EXT_ESCALATION = extension_url("potential-escalation")

# UK Core (and R4 core) extensions on Patient.
UKCORE_ETHNIC_CATEGORY = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
UKCORE_NHS_COMMUNICATION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSCommunication"
R4_INTERPRETER_REQUIRED = "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired"
BCP47 = "urn:ietf:bcp:47"
# British Sign Language: ISO 639-3 "bfi"; "sgn-GB" is the older BCP 47 form some systems still send.
BSL_CODES = frozenset({"bfi", "sgn-gb"})

# Code systems.
REFERRAL_CATEGORY_SYSTEM = code_system("referral-category")
REFERRAL_CATEGORIES = {
    "intimate-partner-violence": AbuseType.domestic_abuse,
    "sexual-violence": AbuseType.sexual_violence,
}
CONSENT_SCOPE_SYSTEM = code_system("consent-scope")
CONSENT_SCOPES = frozenset(ConsentScope)
SAFEGUARDING_FLAG_SYSTEM = code_system("safeguarding-flag")
SNOMED = "http://snomed.info/sct"
CANCELLATION_REASONS = frozenset({"entered-in-error", "duplicate", "survivor-request", "referred-elsewhere", "other"})
# Named organisations in a Consent's provision.actor: the Pathways directory's organisation ids.
ORGANISATION_ID_SYSTEM = f"{CANONICAL}/Id/organisation"

# The SafeLives DASH checklist as a Questionnaire: items "1" … "24".
DASH_QUESTIONNAIRE = f"{CANONICAL}/Questionnaire/safelives-dash"
DASH_ITEMS = tuple(str(n) for n in range(1, 25))
DASH_YES_CODES = frozenset({"y", "yes"})

# Messaging in the style of the NHS Booking and Referral Standard.
BARS_EVENT_SYSTEM = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
MESSAGE_EVENTS = frozenset({"servicerequest-request"})
