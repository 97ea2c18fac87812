"""The gazetteer shipped with the directory: every postcode sector and district with a part in England,
derived from ONS open data (``reference/README.md``: sources, derivation, limits, attribution).

Loaded once per process from a gzip'd JSON file (about 110 kB) and held in memory: it is reference data
that never changes at run time, so it is not copied into every database. An ONSPD/NSPL import
(``pathways gazetteer import``) is stored in the database and takes precedence district by district.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import lru_cache
from pathlib import Path

from shared.geography import Gazetteer

REFERENCE_FILE = Path(__file__).parent / "reference" / "england_gazetteer.json.gz"
DEFAULT_SOURCE = "ons-derived-default"


@lru_cache(maxsize=1)
def default_gazetteer() -> Gazetteer:
    raw = REFERENCE_FILE.read_bytes()
    data = json.loads(gzip.decompress(raw))
    return Gazetteer(
        source=DEFAULT_SOURCE,
        version=f"default:{hashlib.sha256(raw).hexdigest()[:12]}",
        names=data["names"],
        authorities=data["authorities"],
        sectors=data["sectors"],
        districts=data["districts"],
    )


@lru_cache(maxsize=1)
def attribution() -> tuple[str, ...]:
    return tuple(json.loads(gzip.decompress(REFERENCE_FILE.read_bytes()))["attribution"])
