"""The pinned dependencies: requirements.txt and environment.yml must not drift apart."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("- ").strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_requirements_and_environment_yml_agree():
    req = _pins((REPO_ROOT / "requirements.txt").read_text().splitlines())
    env_text = (REPO_ROOT / "environment.yml").read_text()
    pip_block = env_text.split("- pip:", 1)[1].splitlines()
    env = _pins(pip_block)
    assert req == env, (
        f"only in requirements: {set(req.items()) - set(env.items())}; "
        f"only in environment.yml: {set(env.items()) - set(req.items())}"
    )
    assert req["torch"] == "2.11.0" and req["torchaudio"] == "2.11.0"
    assert "python=3.11" in env_text
