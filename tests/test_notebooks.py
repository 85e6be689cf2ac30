"""Every notebook runs headless through papermill and the runner names the failing cell. The
committed notebooks are the source (no generator writes them); what they may contain (no outputs,
stable cell ids, one ``parameters`` cell, no definitions) is checked in test_notebook_sources.py."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers.experiments.notebooks import (
    NotebookError,
    list_notebooks,
    read_notebook_parameters,
    run_notebook,
    run_collection,
)
from helpers.training.config import TrainConfig
from helpers.experiments.grid import ABLATION_SETTINGS, PROFILES

# Trains models, runs notebooks or starts processes: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

NOTEBOOKS = list_notebooks()


def test_collection_is_numbered_and_complete():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:4] == ["00_data", "01_data_exploration", "02_feature_extraction", "03_train"]


def test_train_notebook_parameters_are_the_config():
    params = read_notebook_parameters(next(p for p in NOTEBOOKS if p.stem == "03_train"))
    missing = set(TrainConfig.field_names()) - set(params)
    assert not missing, f"03_train lacks parameters for {sorted(missing)}"


@pytest.fixture(scope="module")
def synthetic_params(tmp_path_factory):
    base = tmp_path_factory.mktemp("nb")
    return {
        "corpus": "synthetic",
        "n_clips": 60,
        "seed": 1,
        "data_dir": str(base / "data"),
        "cache_dir": str(base / "data" / "cache"),
        "figures_dir": str(base / "figures"),
        "out_dir": str(base / "runs"),
        "sample_rates": [8000],
        # 03_train: a narrow net for a few steps, enough to exercise every cell
        "sample_rate": 8000,
        "model_options": {"channels": [8, 16, 32, 64]},
        "iterations": 6,
        "eval_every": 3,
        "ema_start": 3,
        "checkpoint_every": 6,
        "n_listen": 2,
        # 06_embeddings: the run 03 just made
        "runs_dir": str(base / "runs"),
        "perplexity": 5.0,
        # 09_field_recordings: the synthetic test split hides its labels, so devel calls make the truth
        "scan_dir": str(base / "scans"),
        "truth_split": "devel",
        "long_minutes": 1.0,
        "n_calls": 6,
        # 09 and 11 choose the threshold on another split's recording: train's (test hides its labels)
        "threshold_split": "train",
        # 11_pretrained: the heads on BirdNET embeddings; the MLP head briefly
        "pretrained_root": str(base / "pretrained"),
        "head_iterations": 40,
        "seeds": [0, 1],
        # 12_review: one simulated loop of one round
        "review_root": str(base / "review"),
        "review_seeds": [0],
        "rounds": 1,
        "reviews_per_round": 4,
    }


def assert_solutions_answered(nb, path: Path) -> None:
    """The exercises' hidden solutions ran and showed their answer (tests/test_exercises.py: their form)."""
    solutions = [c for c in nb.cells if c.cell_type == "code" and "solution" in c.metadata.get("tags", [])]
    assert solutions, f"{path.name}: no solution cells"
    for cell in solutions:
        shown = [o for o in cell.outputs if o.output_type in ("stream", "display_data", "execute_result")]
        assert shown, f"{path.name}: {cell.source.splitlines()[0]} printed nothing"


def test_collection_runs_headless_on_synthetic_corpus(synthetic_params, tmp_path):
    out = tmp_path / "executed"
    done = run_collection(synthetic_params, notebooks=["00", "01", "02", "03", "06", "09", "11", "12"], output_dir=out)
    assert [p.name for p in done] == [
        f"{p.stem}.ipynb" for p in NOTEBOOKS if p.stem[:2] in {"00", "01", "02", "03", "06", "09", "11", "12"}
    ]
    for path in done:
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors
        assert_solutions_answered(nb, path)
    figures = {p.name for p in Path(synthetic_params["figures_dir"]).glob("*.png")}
    for name in [
        "01_class_counts.png",
        "01_example_logmels.png",
        "02_mean_logmel_per_class.png",
        "03_learning_curves.png",
        "03_confusion_devel.png",
        "06_tsne.png",
        "06_svm_confusion.png",
        "09_detections_semisynthetic.png",
        "09_event_precision_recall.png",
        "09_listening_effort.png",
        "11_confusion_scratch.png",
        "11_confusion_birdnet.png",
        "11_starting_points.png",
        "12_review_rounds.png",
    ]:
        assert name in figures
    # 11 trained the heads in ordinary run folders and tabulated them beside CNN10 from scratch
    comparison = pd.read_csv(Path(synthetic_params["pretrained_root"]) / "demo" / "comparison.csv")
    assert "SVM on CNN10 embeddings (paper §5)" in set(comparison["starting point"])
    assert {"BirdNET + logistic regression", "BirdNET + linear SVM", "BirdNET + MLP head"} <= set(
        comparison["starting point"]
    )
    assert comparison.set_index("starting point").loc["BirdNET + MLP head", "n"] == 2
    # 12 ran a simulated review loop: round 0 and one round of reviews, measured on the devel-split recording
    rounds = pd.read_csv(Path(synthetic_params["review_root"]) / "demo" / "rounds.csv")
    assert list(rounds["round"]) in ([0, 1], [0]) and rounds["event F1"].between(0, 1).all()
    log = [json.loads(line) for line in (out / "executions.jsonl").read_text().splitlines()]
    assert [e["notebook"] for e in log] == [p.name for p in done]


def test_runner_names_the_failing_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# broken"),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("y = 2"),
        nbformat.v4.new_code_cell("raise ValueError('boom at cell three')"),
    ]
    path = tmp_path / "99_broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookError, match=r"99_broken.ipynb: cell \d+ .*ValueError: boom at cell three"):
        run_notebook(path, {"x": 2}, output_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="unknown parameter"):
        run_notebook(path, {"z": 2}, output_dir=tmp_path / "out")


def test_grid_notebooks_run_headless_on_synthetic_corpus(tmp_path):
    """04, 05, 07 and 08 on a tiny synthetic corpus: narrow nets, two steps per run."""
    from helpers.data.corpora.synthetic import make_synthetic_corpus

    root = make_synthetic_corpus(tmp_path / "corpus", n_clips=50, seed=2)
    tiny = {"channels": [8, 16, 32, 64]}
    params = {
        "profile": "demo",
        "corpus": str(root),
        "data_dir": str(tmp_path / "data"),
        "cache_dir": str(tmp_path / "cache"),
        "runs_root": str(tmp_path / "runs"),
        "figures_dir": str(tmp_path / "figures"),
        "report_dir": str(tmp_path / "report"),
        "overrides": {
            "iterations": 2,
            "eval_every": 1,
            "ema_start": 1,
            "checkpoint_every": 2,
            "batch_size": 4,
            "wave_augment_copies": 1,
        },
        "model_options": {"cnn6": tiny, "cnn10": tiny},
        "cpu_workers": 2,
        "threads_per_run": 1,
        "runs": [["cnn6", 8000], ["cnn10", 8000]],  # 04
        "models": [["cnn10", 8000]],
        "settings": list(ABLATION_SETTINGS),  # 05: all nine settings
        "seeds": [0],  # 04, 05, 07, 10: one seed
        "branches": [["cnn6", 8000], ["cnn10", 8000]],  # 07
        "fusion_branches": [["cnn6", 8000], ["cnn10", 8000]],
        "perplexity": 5.0,  # 08
    }
    out = tmp_path / "executed"
    done = run_collection(params, notebooks=["04", "05", "07", "08", "10"], output_dir=out)
    # the report runs last: it gathers what the others wrote
    assert [p.stem for p in done] == ["04_model_comparison", "05_ablation", "07_fusion", "10_hierarchical", "08_report"]
    for path in done:
        assert_solutions_answered(nbformat.read(path, as_version=4), path)
    # every grid notebook says which of its runs' devel curves are flat (the test of helpers.evaluation.curves)
    for path in done[:4]:
        printed = "".join(
            o.get("text", "")
            for c in nbformat.read(path, as_version=4).cells
            for o in c.get("outputs", [])
            if o.get("output_type") == "stream"
        )
        assert "curves are flat (mean devel UAR of the last 25% of the steps" in printed, path.name
    runs = tmp_path / "runs" / "demo"
    # 04 trained through papermill runs of 03_train; 05, 07 and 10 directly; 9 + 4 + 1 shared folders;
    # 10 adds a multi-task run and the two stages (its flat run is 05's full recipe)
    assert len(list(runs.glob("*/03_train.ipynb"))) == 2
    assert len(list(runs.glob("*/metrics.json"))) == 2 + 9 - 1 + 3
    assert len(list(runs.glob("cnn10-multitask-8k-*/metrics.json"))) == 1
    assert len(list((runs / "fusion").glob("*/metrics.json"))) == len(PROFILES["demo"].fusion_variants)
    # 10 scanned its semi-synthetic recording with the flat and the multi-task run, the latter on P(call)
    scans = {
        p.parent.name.split("-8k-")[0]: json.loads(p.read_text())["settings"]
        for p in (runs / "hierarchy-scan").glob("*/scan.json")
    }
    assert scans["cnn10"]["score_from"] == "class" and scans["cnn10-multitask"]["score_from"] == "call"
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    for name in [
        "04_model_comparison.png",
        "04_learning_curves.png",
        "05_ablation_gains.png",
        "05_ablation_gain_over_baseline.png",
        "07_fusion.png",
        "08_table2.png",
        "08_ablation.png",
        "08_confusion.png",
        "08_tsne.png",
        "08_learning_curves.png",
        "10_hierarchical.png",
        "10_confusions.png",
    ]:
        assert name in figures, name
    html = (tmp_path / "report" / "report-demo.html").read_text()
    md = (tmp_path / "report" / "report-demo.md").read_text()
    for text in ["Table 2", "Table 3", "Fusion", "CNN10-8k", "optimistic", "data:image/png;base64,"]:
        assert text in html, text
    assert "| model |" in md and "report-demo-assets/" in md


def test_profile_reaches_the_notebooks(monkeypatch, tmp_path):
    """`python -m helpers notebooks --profile paper` (what `make paper` runs) hands every notebook
    the values it defines: 03 the paper schedule, the grid notebooks the profile name."""
    import helpers.experiments.notebooks as nbmod
    from helpers.__main__ import main

    seen = {}
    monkeypatch.setattr(nbmod, "run_notebook", lambda path, params, **kw: seen.setdefault(path.stem, params) and path)
    assert main(["notebooks", "--profile", "paper", "--corpus", str(tmp_path), "--data-dir", str(tmp_path)]) == 0
    assert seen["03_train"]["iterations"] == 60_000 and seen["03_train"]["sample_rate"] == 16000
    assert seen["03_train"]["corpus"] == str(tmp_path)
    for name in ("04_model_comparison", "05_ablation", "07_fusion", "08_report"):
        assert seen[name]["profile"] == "paper" and seen[name]["corpus"] == str(tmp_path)
        assert "iterations" not in seen[name]  # grid notebooks take the schedule from the profile
    for name in ("04_model_comparison", "05_ablation", "07_fusion"):
        assert seen[name]["executor"] == "local"  # and may train on SLURM (executor, slurm_config)
        assert {"executor", "slurm_config"} <= set(
            read_notebook_parameters(next(p for p in NOTEBOOKS if p.stem == name))
        )
    assert "profile" not in seen["00_data"]
    with pytest.raises(SystemExit):
        main(["notebooks", "--profile", "huge"])
    # every name the paper profile gives 03_train is one of its parameters
    assert set(seen["03_train"]) <= set(read_notebook_parameters(next(p for p in NOTEBOOKS if p.stem == "03_train")))
