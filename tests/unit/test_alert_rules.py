"""The example Prometheus alert rules parse, and every expression reads metrics the services export."""

from __future__ import annotations

from pathlib import Path

import promql_parser
import yaml
from prometheus_client import REGISTRY

import shared.metrics  # noqa: F401 - registers every Pathways metric family

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
# Prometheus' own series about a scrape target.
PROMETHEUS_SERIES = {"up"}


def exported_series() -> set[str]:
    return {sample.name for family in REGISTRY.collect() if family.name.startswith("pathways_")
            for sample in family.samples} | {
        # Labelled families without samples yet still export these names once used.
        f"{family.name}{suffix}" for family in REGISTRY.collect() if family.name.startswith("pathways_")
        for suffix in {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}[family.type]
    }


def selectors(expr: str) -> list[str]:
    names: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def test_every_alert_parses_and_reads_exported_metrics():
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert len(rules) >= 10
    exported = exported_series()
    for rule in rules:
        names = selectors(rule["expr"])
        assert names, rule["alert"]
        unknown = [n for n in names if n not in exported and n not in PROMETHEUS_SERIES]
        assert unknown == [], f"{rule['alert']} reads metrics nobody exports: {unknown}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert len({r["alert"] for r in rules}) == len(rules)


def test_the_operations_guide_says_what_each_alert_means():
    guide = OPERATIONS.read_text()
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert [r["alert"] for r in rules if f"`{r['alert']}`" not in guide] == []
