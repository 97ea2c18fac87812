"""Build the shipped default gazetteer (``services/directory/reference/england_gazetteer.json.gz``) from the
ONS-derived geography CSVs (sources, derivation and limits: ``services/directory/reference/README.md``).

Run by hand when the source CSVs change; nothing reads the source folder at run or test time:

    .venv/bin/python tools/build_gazetteer.py SOURCE_DIR [services/directory/reference/england_gazetteer.json.gz]

The output is deterministic (sorted keys, fixed gzip mtime) so a rebuild from the same sources is byte-identical.
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared.geography import ICB_ALIASES  # noqa: E402 - recorded beside the data for provenance

OUT = Path(__file__).resolve().parent.parent / "services/directory/reference/england_gazetteer.json.gz"
SOURCE = "ONS-derived open data: NSPL May 2025 centroids in LSOA21 (BSC) polygons; LSOA21→SICBL24→ICB24 (April 2024)"


def rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / name).open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def shares(parts: dict[str, int], total: int) -> list[list[object]]:
    """[[code, share], ...], largest first (ties by code); an empty code is the part outside England/Wales."""
    return [[code, round(n / total, 4)] for code, n in sorted(parts.items(), key=lambda kv: (-kv[1], kv[0]))]


def build(folder: Path) -> dict[str, Any]:
    names = {r["code"]: r["name"] for r in rows(folder, "gss_names.csv") if r["type"] in ("LAD", "UTLA", "RGN", "ICB")}
    authorities = {}
    icb_nhs = {}
    for r in rows(folder, "lad_lookup.csv"):
        authorities[r["lad_code"]] = [r["utla_code"], r["region_code"], r["icb_code"]]
        icb_nhs[r["icb_code"]] = r["icb_code_nhs"]
    for r in rows(folder, "lad_sicbl_icb.csv"):
        icb_nhs[r["icb_code"]] = r["icb_code_nhs"]

    sector_lads: dict[str, dict[str, int]] = defaultdict(dict)
    sector_total: dict[str, int] = {}
    for r in rows(folder, "postcode_sectors.csv"):
        sector_lads[r["sector"]][r["lad_code"]] = sector_lads[r["sector"]].get(r["lad_code"], 0) + int(r["n_postcodes"])
        sector_total[r["sector"]] = int(r["sector_postcodes"])
    sector_icbs: dict[str, dict[str, int]] = defaultdict(dict)
    district_icbs: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows(folder, "postcode_sectors_icb.csv"):
        # An ICB can have several sub-ICB locations in one sector: the ICB's share is their sum.
        n = int(r["n_postcodes"])
        sector_icbs[r["sector"]][r["icb_code"]] = sector_icbs[r["sector"]].get(r["icb_code"], 0) + n
        district = r["sector"].split(" ")[0]
        district_icbs[district][r["icb_code"]] = district_icbs[district].get(r["icb_code"], 0) + n

    district_lads: dict[str, dict[str, int]] = defaultdict(dict)
    district_total: dict[str, int] = {}
    for r in rows(folder, "postcode_districts.csv"):
        district_lads[r["district"]][r["lad_code"]] = int(r["n_postcodes"])
        district_total[r["district"]] = int(r["district_postcodes"])
    for district, parts in district_icbs.items():
        # Postcodes of the district in no English sector (Welsh or outside) make up the empty-code part.
        rest = district_total[district] - sum(n for code, n in parts.items() if code)
        parts.pop("", None)
        if rest > 0:
            parts[""] = rest

    return {
        "format": 1,
        "source": SOURCE,
        "attribution": ATTRIBUTION,
        "names": dict(sorted(names.items())),
        "authorities": dict(sorted(authorities.items())),
        "icb_nhs_codes": dict(sorted(icb_nhs.items())),
        "icb_aliases": ICB_ALIASES,
        "sectors": {s: [shares(sector_lads[s], sector_total[s]), shares(sector_icbs[s], sector_total[s])]
                    for s in sorted(sector_lads)},
        "districts": {d: [shares(district_lads[d], district_total[d]),
                          shares(district_icbs.get(d, {"": district_total[d]}), district_total[d])]
                      for d in sorted(district_lads)},
    }


ATTRIBUTION = [
    "Source: Office for National Statistics licensed under the Open Government Licence v.3.0.",
    "Contains OS data © Crown copyright and database right 2025.",
    "Contains Royal Mail data © Royal Mail copyright and database right 2025.",
    "Contains GeoPlace data © Local Government Information House Limited copyright and database right 2025.",
    "Contains National Statistics data © Crown copyright and database right 2025.",
]


def main(source: str, out: str | None = None) -> None:
    data = build(Path(source))
    target = Path(out) if out else OUT
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    with target.open("wb") as stream, gzip.GzipFile(fileobj=stream, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw)
    counts = ", ".join(f"{len(data[part])} {part}" for part in ("sectors", "districts", "authorities"))
    print(f"{target}: {counts}; {len(raw):,} bytes, {target.stat().st_size:,} gzipped")


if __name__ == "__main__":
    main(*sys.argv[1:3])
