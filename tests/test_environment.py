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
    assert req == env, f"only in requirements: {set(req.items()) - set(env.items())}; only in environment.yml: {set(env.items()) - set(req.items())}"
    assert req["torch"] == "2.11.0" and req["torchaudio"] == "2.11.0"
    assert "python=3.11" in env_text


def test_installed_versions_match_pins():
    from importlib import metadata

    req = _pins((REPO_ROOT / "requirements.txt").read_text().splitlines())
    for name in ("torch", "torchaudio", "numpy", "librosa", "soundfile", "papermill"):
        assert metadata.version(name).split("+")[0] == req[name], name


def test_torchaudio_imports_with_torch():
    import torch
    import torchaudio

    assert torchaudio.__version__.split("+")[0] == torch.__version__.split("+")[0] == "2.11.0"
