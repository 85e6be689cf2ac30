"""The command line ``python -m helpers``: ``--param NAME=VALUE`` values, and the ``bench``
command handed to the helpers/bench/ package's own parser (imported only when asked for).
The notebooks' own CLI test (``--profile`` reaching each notebook) is in tests/test_notebooks.py."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import helpers.__main__ as cli
from helpers.__main__ import main, parse_param
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model=fusion", ("model", "fusion")),  # not JSON: the plain string (used to crash)
        ("x=true", ("x", True)),
        ("flag=false", ("flag", False)),
        ("name=null", ("name", None)),
        ("n=3", ("n", 3)),
        ("lr=0.001", ("lr", 0.001)),
        ('s="3"', ("s", "3")),  # quoted JSON: a string
        ('opts={"a": 1}', ("opts", {"a": 1})),
        ("l=[1, 2]", ("l", [1, 2])),
        ("a=b=c", ("a", "b=c")),  # only the first '=' splits
        ("t=tru", ("t", "tru")),  # starts like JSON, is not: the string
        ("n=3x", ("n", "3x")),
        ("e=", ("e", "")),
    ],
)
def test_param_values_are_json_when_they_parse_else_strings(text, expected):
    name, value = parse_param(text)
    assert (name, value) == expected and type(value) is type(expected[1])


def _notebook_params(monkeypatch, tmp_path, *extra: str) -> dict:
    import helpers.experiments.notebooks as nbmod

    seen = {}
    monkeypatch.setattr(nbmod, "run_collection", lambda params, **kw: seen.update(params))
    assert main(["notebooks", "--corpus", str(tmp_path), "--data-dir", str(tmp_path), *extra]) == 0
    return seen


def test_params_reach_the_notebooks(monkeypatch, tmp_path):
    params = _notebook_params(
        monkeypatch,
        tmp_path,
        "--param",
        "model=fusion",
        "--param",
        "iterations=20",
        "--param",
        'model_options={"freeze": false}',
        "--param",
        'tag="7"',
    )
    assert params["model"] == "fusion" and params["iterations"] == 20 and params["tag"] == "7"
    assert params["model_options"] == {"freeze": False}
    assert params["corpus"] == str(tmp_path)  # the command's own parameters are still there
    # a later --param wins over an earlier one and over the command's own value
    params = _notebook_params(monkeypatch, tmp_path, "--param", "n=1", "--param", "n=2", "--param", "corpus=x")
    assert params["n"] == 2 and params["corpus"] == "x"


def test_executor_and_slurm_config_reach_the_notebooks(monkeypatch, tmp_path, capsys):
    assert _notebook_params(monkeypatch, tmp_path)["executor"] == "local"
    config = tmp_path / "slurm.json"
    config.write_text('{"partition": "gpu", "gpus_per_node": 1}')
    params = _notebook_params(monkeypatch, tmp_path, "--executor", "slurm", "--slurm-config", str(config))
    assert params["executor"] == "slurm" and params["slurm_config"] == str(config.resolve())
    # a wrong options file stops the command before any notebook runs, naming the file and the key
    config.write_text('{"gpus": 1}')
    assert main(["notebooks", "--executor", "slurm", "--slurm-config", str(config)]) == 2
    assert "slurm.json: unknown key(s) ['gpus']" in capsys.readouterr().err
    assert main(["notebooks", "--slurm-config", str(config)]) == 2
    assert "--slurm-config needs --executor slurm" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["model", "=fusion"])
def test_param_without_a_name_and_equals_sign_is_an_argparse_error(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["notebooks", "--param", bad])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "--param" in err and "expected NAME=VALUE" in err and "--param model=fusion" in err


def test_help_lists_bench_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert re.search(r"^\s+bench\s+time training", out, re.M)  # the subcommand list (help may wrap)
    assert len(cli.BENCH_HELP) < 100 and "\n" not in cli.BENCH_HELP
    assert "--model-options" not in out and "--cpu-amp" not in out  # bench's options: its own help


def test_bench_help_shows_every_bench_option(capsys):
    from helpers.bench import build_parser

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith("usage: python -m helpers bench")
    flags = [flag for action in build_parser()._actions for flag in action.option_strings]
    assert len(flags) >= 14
    for flag in flags:
        assert flag in out, flag


def test_bench_arguments_go_untouched_to_bench_main(monkeypatch):
    import helpers.bench

    seen = []
    monkeypatch.setattr(helpers.bench, "main", lambda argv: seen.append(argv) or 5)
    argv = ["--models", "cnn6", "--rates", "8000", "--model-options", '{"channels": [8, 16, 32, 64]}', "--no-eval"]
    assert main(["bench", *argv]) == 5 and seen == [argv]


def _imported_modules(path: Path, everywhere: bool) -> set[str]:
    """Module names a source file imports (relative ones as '.name'): at its top level, or
    ``everywhere`` (inside functions too)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree) if everywhere else tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_bench_and_main_do_not_import_each_other():
    bench_files = sorted((REPO_ROOT / "helpers" / "bench").glob("*.py"))
    assert REPO_ROOT / "helpers" / "bench" / "cli.py" in bench_files
    for path in bench_files:  # no module of the bench package imports the command line
        bench_imports = _imported_modules(path, everywhere=True)
        assert not [name for name in bench_imports if "__main__" in name], path.name
    assert not {"helpers.bench", ".bench", "helpers", "."} & _imported_modules(Path(cli.__file__), everywhere=False)
    # importing the command line does not import the benchmark (nor torch)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, helpers.__main__; print('helpers.bench' in sys.modules, 'torch' in sys.modules)",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------- annotations
def _annotated_recordings(tmp_path):
    """Three 12-s recordings (16, 44.1 kHz, one stereo), each with two calls, and a plain CSV of them."""
    import numpy as np
    import soundfile as sf

    audio = tmp_path / "audio" / "site_a"
    audio.mkdir(parents=True)
    rows = ["file,begin,end,label"]
    rng = np.random.default_rng(0)
    for k, (name, sr, ch) in enumerate([("r1.wav", 16000, 1), ("r2.wav", 44100, 2), ("r3.wav", 16000, 1)]):
        x = 0.01 * rng.standard_normal((12 * sr, ch)).astype(np.float32)
        sf.write(str(audio / name), x if ch > 1 else x[:, 0], sr)
        rows += [f"{name},{1.0 + k},{2.0 + k},call_{'ab'[k % 2]}", f"{name},8.0,8.5,call_a"]
    table = tmp_path / "calls.csv"
    table.write_text("\n".join(rows) + "\n")
    return table, tmp_path / "audio"


def test_corpus_annotations_cuts_a_valid_corpus(tmp_path, capsys):
    from helpers.data.corpus import read_corpus, validate_corpus

    table, audio = _annotated_recordings(tmp_path)
    out = tmp_path / "corpus"
    assert (
        main(
            [
                "corpus",
                "annotations",
                "--annotations",
                str(table),
                "--audio",
                str(audio),
                "--out",
                str(out),
                "--margin",
                "0.5",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "clips from 3 recording(s)" in printed and "0 error(s)" in printed
    assert validate_corpus(out).ok
    corpus = read_corpus(out)
    assert {"call_a", "call_b", "background"} <= set(corpus.classes)
    manifest = __import__("pandas").read_csv(out / "manifest.csv")
    assert manifest.groupby("recording")["split"].nunique().max() == 1  # one recording, one split


def test_annotations_command_reports_and_excludes(tmp_path, capsys):
    table, audio = _annotated_recordings(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(table.read_text() + "r1.wav,5.0,4.0,call_a\nmissing.wav,1.0,2.0,call_a\n")
    assert main(["annotations", str(bad), "--audio", str(audio)]) == 1
    printed = capsys.readouterr().out
    assert "bad.csv line 8" in printed and "bad.csv line 9" in printed  # reversed times, unknown recording
    out = tmp_path / "checked.csv"
    assert main(["annotations", str(bad), "--audio", str(audio), "--exclude", "--out", str(out)]) == 0
    assert len(__import__("pandas").read_csv(out)) == 6
