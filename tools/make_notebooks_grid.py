"""Notebooks 04 (model comparison), 05 (ablation), 07 (fusion) and 08 (report); imported by
tools/make_notebooks.py."""
from __future__ import annotations

from notebook_builder import code, md

# Parameters every grid notebook shares (corpus, where runs go, how many at once).
GRID_PARAMETERS = """
profile = "demo"                # "demo": minutes on a laptop CPU; "paper": the paper's schedule (needs a GPU)
corpus = "demo"                 # "demo", "synthetic" or a corpus folder (the real one: make paper)
data_dir = "../data"
cache_dir = "../data/cache"
runs_root = "../runs/grid"      # runs go to runs_root/profile; a finished run is never trained twice
seeds = None                    # None: the profile's seeds
overrides = {}                  # TrainConfig fields for every run, e.g. {"iterations": 1000}
model_options = {}              # per model, e.g. {"cnn10": {"channels": [16, 32, 64, 128]}}
cpu_workers = None              # concurrent runs on a machine without GPU (None: see helpers.experiments.scheduler)
threads_per_run = None          # torch threads per run (None: cores / concurrent runs)
max_per_gpu = 4                 # concurrent runs per GPU
redo = False                    # True: train every run again from scratch
fail_on_error = True            # raise at the end when a run failed (after showing the tables)
figures_dir = "../figures"
"""

GRID_SETUP = """
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from helpers.experiments import grid

from helpers.reporting import plots
from helpers.experiments.collect import collect_runs
from helpers.core.hardware import configure_threads

configure_threads(1)            # this kernel only schedules; the runs have their own threads
pd.set_option("display.width", 160, "display.max_colwidth", 60)
FIGURES = Path(figures_dir)
base = {"corpus": corpus, "data_dir": data_dir, "cache_dir": cache_dir,
        "out_dir": str(Path(runs_root) / profile), **overrides}
parallel = {"cpu_workers": cpu_workers, "threads_per_run": threads_per_run, "max_per_gpu": max_per_gpu,
            "via": "notebook" if via_notebook else "python"}
print(f"profile {profile!r}:", grid.PROFILES[profile]["config"], "seeds", seeds or grid.PROFILES[profile]["seeds"])
"""

SHOW_GRID = """
def show_grid(table):
    display(table[["model", "sample_rate", "seed", "setting", "status", "seconds", "run_dir"]])
    failed = table[table.status == "failed"]
    for row in failed.itertuples():
        display(Markdown(f"**FAILED** `{row.run_dir}`:\\n\\n```\\n{row.error}\\n```"))
    return failed
"""

FAIL_AT_END = """
failed_runs = [r for t in grids for r in t[t.status == "failed"].run_dir]
if failed_runs and fail_on_error:
    raise RuntimeError(f"{len(failed_runs)} run(s) failed (their rows are in the tables above; each folder "
                       f"has failed.json and worker.log): {failed_runs}")
print("all runs finished" if not failed_runs else f"failed runs: {failed_runs}")
"""


def nb04():
    return [
        md("""
# 04 · Model comparison: the paper's Table 2

* **What it shows:** every (model, sample rate) pair of the paper's Table 2 trained with the full
  recipe (balanced sampling, SpecAugment, MixUp, EMA), one table with our devel mAP and UAR beside
  the paper's, test UAR where the test labels exist, parameter counts and training time.
* **What it needs first:** a corpus (`00_data`). Each run is a papermill execution of
  `03_train` with the run's config as its parameters: the executed notebook, with its curves and
  confusion matrix, stays in the run folder (`RUN/03_train.ipynb`).

Profiles: `demo` trains every model at 8 kHz for 30 steps of 16 clips: enough to see the machinery
and the table, **not** to reproduce the paper (the models are far from converged; their ranking
here is mostly noise). `paper` trains the seven rows for 60,000 steps each, three seeds: run it on
a GPU (`make paper DATA=<corpus folder>`).
"""),
        code("""
runs = None                     # [[model, sample_rate], ...]; None: the profile's Table 2 rows
via_notebook = True             # each run through a papermill execution of 03_train
""" + GRID_PARAMETERS, parameters=True),
        code(GRID_SETUP + """
pairs = None if runs is None else [tuple(r) for r in runs]
configs = grid.apply_model_options(grid.table2_configs(profile, base, seeds=seeds, runs=pairs), model_options)
pd.DataFrame([{"model": grid.model_label(c.model, c.sample_rate), "seed": c.seed, "iterations": c.iterations,
               "batch": c.batch_size, "run folder": str(c.run_dir())} for c in configs])
"""),
        md("""
## Train

Runs go to separate processes, several at a time (one per core pair on a CPU, up to
`max_per_gpu` per GPU), and each run folder is keyed by its config: calling again skips the
finished runs, resumes interrupted ones, and lists failed ones as failed rows with their error.
"""),
        code(SHOW_GRID + """
table = grid.run_grid(configs, redo=redo, **parallel)
grids = [table]
failed = show_grid(table)
"""),
        md("""
## Table 2, ours beside the paper

Values in %. **best** = the checkpoint with the best devel UAR among all evaluations: its devel
score was used to choose it, so it is optimistic; the paper's devel numbers are of this kind.
**last** = the EMA model after the final step, chosen on nothing. Test UAR is never selected on.
With several seeds a cell reads `mean ± std [95 % bootstrap CI over seeds]`. The ELM and auDeep
rows are the challenge baselines, which we do not retrain.
"""),
        code("""
from helpers.experiments.collect import table2
collected = collect_runs([c.run_dir() for c in configs])
table2(collected)
"""),
        code("""
numbers = table2(collected, as_text=False)
ours = "devel UAR, best (selected on devel: optimistic)"
shown = numbers[numbers[ours].notna()]
fig = plots.plot_model_comparison(shown, ours=ours, paper="paper devel UAR",
                                  title=f"Devel UAR, best checkpoint (optimistic), profile {profile}")
plots.save_figure(fig, "04_model_comparison", FIGURES); plt.show()
"""),
        md("""
## Learning curves

Devel UAR of each run's EMA model over the steps (the plain model before the EMA starts). A curve
still rising at the end says the run stopped too early, which is the case for every demo run.
"""),
        code("""
histories = {grid.model_label(c.model, c.sample_rate) + f" s{c.seed}": pd.read_csv(c.run_dir() / "history.csv")
             for c in configs if (c.run_dir() / "history.csv").is_file()}
fig = plots.plot_learning_curve_overlay(histories, title=f"Table 2 runs, profile {profile}")
plots.save_figure(fig, "04_learning_curves", FIGURES); plt.show()
"""),
        code(FAIL_AT_END),
    ]


def nb05():
    return [
        md("""
# 05 · Ablation: what each ingredient brings (the paper's Table 3)

* **What it shows:** the six settings of Table 3 (with and without balanced sampling,
  SpecAugment, MixUp and EMA) plus three rows the paper discusses without a table (waveform time
  stretching, pitch shifting, and the EMA as the authors' code implements it, `ema_mode="reference"`),
  each over several seeds, as mean ± std with bootstrap confidence intervals, beside the paper's
  numbers; then a plot of the gains.
* **What it needs first:** a corpus (`00_data`). The full-recipe run of a model is the same
  config as its Table 2 run, so it is shared with `04` (trained once).

The paper reports one run per setting. Differences of a point or two between settings are within
what a different seed gives, which is why the `paper` profile trains three seeds and the table
shows their spread. The `demo` profile (one seed, 30 steps) shows the machinery only.
"""),
        code("""
models = None                   # [[model, sample_rate], ...]; None: the profile's ablation models
settings = None                 # names from helpers.experiments.grid.ABLATION_SETTINGS; None: all nine
via_notebook = False            # True: each run through a papermill execution of 03_train
""" + GRID_PARAMETERS, parameters=True),
        code(GRID_SETUP + """
pairs = grid.PROFILES[profile]["ablation_runs"] if models is None else [tuple(m) for m in models]
configs = [c for model, rate in pairs
           for c in grid.ablation_configs(model, rate, profile, seeds=seeds, base=base, settings=settings)]
configs = grid.apply_model_options(configs, model_options)
display(pd.DataFrame(grid.ABLATION_SETTINGS).T)
print(f"{len(configs)} runs:", ", ".join(grid.model_label(m, r) for m, r in pairs), "x",
      len(settings or grid.ABLATION_SETTINGS), "settings x", len(seeds or grid.PROFILES[profile]["seeds"]), "seeds")
"""),
        md("""
## Train

Time stretching and pitch shifting work on the waveform, so they need new log-mels: a bank of
augmented copies of the training set is computed once per run (and cached), and each example
draws the original or one of the copies. The first such run in a process spends a few seconds
compiling librosa's resampler.
"""),
        code(SHOW_GRID + """
table = grid.run_grid(configs, redo=redo, **parallel)
grids = [table]
failed = show_grid(table)
"""),
        md("""
## Table 3, ours beside the paper

Values in %, devel set (the paper's Table 3 is devel only; our test UAR is shown too). **best**
is selected on devel (optimistic), **last** is not. The "no EMA" row reports the plain model;
all others the EMA model.
"""),
        code("""
import numpy as np
from helpers.experiments.collect import ablation_gains, summarise, table3
collected = collect_runs([c.run_dir() for c in configs])
t3 = table3(collected, paper_models=False)
t3
"""),
        md("""
## Gains, with their uncertainty

Per setting: mean over seeds with the bootstrap 95 % interval of the mean, and the gain over the
"bal, no-aug" baseline of the same model. With one seed there is no interval at all: a single run
says nothing about how much a setting's score would move with another seed.
"""),
        code("""
summary = summarise(collected[collected.setting.notna()], by=["model", "sample_rate", "setting"])
gains = ablation_gains(summary, metric="best_devel_uar")
gains
"""),
        code("""
fig = plots.plot_ablation_gains(gains, metric="uar",
                                title=f"Ablation, devel UAR of the best checkpoint (optimistic), profile {profile}")
plots.save_figure(fig, "05_ablation_gains", FIGURES); plt.show()
"""),
        md("""
The same as gains: each setting minus "bal, no-aug" of the same model, in UAR points, ours (bars)
and the paper's (diamonds). The paper's largest gains come from SpecAugment and MixUp on ResNet22.
"""),
        code("""
baseline = "gain over bal, no-aug"
as_gains = gains.assign(ours_mean=gains[baseline], paper=gains["paper " + baseline])
span = max(10.0, float(np.nanmax(np.abs(as_gains[["ours_mean", "paper"]].to_numpy(dtype=float)))) + 2)
fig = plots.plot_ablation_gains(as_gains, xlim=(-span, span), xlabel="gain over bal, no-aug (UAR points)",
                                title=f"Ablation gains, devel UAR of the best checkpoint, profile {profile}")
plots.save_figure(fig, "05_ablation_gain_over_baseline", FIGURES); plt.show()
"""),
        code(FAIL_AT_END),
    ]


def nb07():
    return [
        md("""
# 07 · Fusion: two networks, one classifier

* **What it shows:** the paper's ResNet22-CNN10 fusion (section 5): the embeddings of both
  networks (2048 + 512 values) concatenated and fed to one new linear layer. The branches start
  from the best checkpoints of their single-model runs and are either **frozen** (only the new
  layer learns; the paper's best variant, with both augmentations) or **trainable** (everything
  is fine-tuned), each with and without SpecAugment + MixUp. One table against both single models.
* **What it needs first:** a corpus (`00_data`). The branch runs are the Table 2 runs of `04`
  (reused when finished, trained here otherwise).
"""),
        code("""
branches = None                 # [[model, rate], [model, rate]]; None: the profile's (demo: ResNet22-8k + CNN10-8k)
branch_checkpoint = "best_ema"  # which checkpoint of each branch run starts the fusion
variants = None                 # names from helpers.experiments.grid.FUSION_VARIANTS; None: all four
via_notebook = False
""" + GRID_PARAMETERS, parameters=True),
        code(GRID_SETUP + """
from helpers.experiments.collect import fusion_table
pairs = grid.PROFILES[profile]["fusion_branches"] if branches is None else [tuple(b) for b in branches]
if len({rate for _, rate in pairs}) != 1:
    raise ValueError(f"fusion branches must share one sample rate (they read the same log-mels): {pairs}")
rate = pairs[0][1]
first_seed = (seeds or grid.PROFILES[profile]["seeds"])[:1]
branch_configs = grid.apply_model_options(grid.table2_configs(profile, base, seeds=first_seed, runs=pairs),
                                          model_options)
"""),
        md("## The two single models (trained in `04`, or here if not yet)"),
        code(SHOW_GRID + """
branch_table = grid.run_grid(branch_configs, redo=False, **parallel)
failed_branches = show_grid(branch_table)
if len(failed_branches):
    raise RuntimeError("a branch run failed, so there is nothing to fuse; see the table above")
ckpts = [c.run_dir() / "checkpoints" / f"{branch_checkpoint}.pt" for c in branch_configs]
ckpts
"""),
        md("""
## Train the fusion variants

Only the classifier is new. Frozen branches stay in evaluation mode (their BatchNorm statistics
and dropout fixed), so a frozen fusion step costs little more than two forward passes.
"""),
        code("""
fusion_base = {**base, "out_dir": str(Path(runs_root) / profile / "fusion")}
configs = grid.fusion_configs(ckpts[0], ckpts[1], rate, profile, base=fusion_base, seeds=seeds, variants=variants)
table = grid.run_grid(configs, redo=redo, **parallel)
grids = [branch_table, table]
failed = show_grid(table)
"""),
        md("""
## Fusion against the single models

Values in %. The paper reports 91.6 % devel UAR and 96.2 % mAP for the frozen fusion with both
augmentations, below its best single model (CNN10-16k, 93.6 %). **best** is selected on devel
(optimistic); **last** is not.
"""),
        code("""
collected = collect_runs([c.run_dir() for c in branch_configs + configs])
t = fusion_table(collected, pairs)
t
"""),
        code("""
numbers = fusion_table(collected, pairs, as_text=False)
numbers["label"] = numbers["model"] + ", " + numbers["variant"]
ours = "devel UAR, best (selected on devel: optimistic)"
fig = plots.plot_model_comparison(numbers[numbers[ours].notna()], ours=ours, paper="paper devel UAR", label="label",
                                  title=f"Fusion vs single models, devel UAR (best, optimistic), profile {profile}")
plots.save_figure(fig, "07_fusion", FIGURES); plt.show()
"""),
        code(FAIL_AT_END),
    ]


def nb08():
    return [
        md("""
# 08 · Report: every table and figure, ours beside the paper

* **What it shows:** the final tables (Table 2, Table 3, fusion) and figures (model comparison,
  ablation gains, confusion matrix, t-SNE map of embeddings, learning curves), gathered from the
  run folders, and one self-contained report (`figures/report-<profile>.html`, plus a Markdown
  copy) that states how each number was obtained.
* **What it needs first:** runs from `04`, `05` and `07` of the same profile. Nothing is read from
  notebook outputs: only run folders (config, metrics, predictions, history).
"""),
        code("""
profile = "demo"
corpus = "demo"                 # for the t-SNE map and the SVM: embeddings are recomputed from a checkpoint
data_dir = "../data"
cache_dir = "../data/cache"
runs_root = "../runs/grid"
figures_dir = "../figures"
report_dir = "../figures"       # report-<profile>.html and .md go here
fusion_branches = None          # [[model, rate], [model, rate]] fused in 07; None: the profile's
perplexity = 30.0
seed = 0
device = "auto"
""", parameters=True),
        code("""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from helpers.experiments import grid

from helpers.reporting import plots
from helpers.experiments.collect import ablation_gains, ablation_models, collect_runs, fusion_table, summarise, table2, table3
from helpers.data.named import prepare_corpus
from helpers.evaluation.embeddings import extract_embeddings, fit_linear_svm, svm_beside_network, tsne_2d
from helpers.core.hardware import configure_threads
from helpers.reporting.report import Report, how_obtained
from helpers.core.provenance import read_json

configure_threads()
pd.set_option("display.width", 160)
FIGURES = Path(figures_dir)
root = Path(runs_root) / profile
runs = collect_runs(root)
prof = grid.PROFILES[profile]
display(runs.groupby(["model", "status"]).size().rename("runs").to_frame())
report = Report(f"Primate vocalisation classification: our runs beside Pellegrini (2021), profile '{profile}'")
"""),
        md("""
## How the numbers were obtained

Everything below comes from the run folders under `runs_root/profile`. The report says which
checkpoint each number is from, and whether it was selected on the split it is reported on.
"""),
        code("""
how = how_obtained(runs, profile)
report.text("\\n".join(how))
display(Markdown("\\n".join(how)))
"""),
        md("## Table 2: model comparison"),
        code("""
t2 = table2(runs)
report.heading("Table 2: model comparison (full recipe)")
report.table(t2.drop(columns=["weights"]), caption="Devel and test scores in %, ours beside the paper's")
ours = "devel UAR, best (selected on devel: optimistic)"
numbers = table2(runs, as_text=False)
if numbers[ours].notna().any():
    fig = plots.plot_model_comparison(numbers[numbers[ours].notna()], ours=ours, paper="paper devel UAR",
                                      title="Devel UAR, best checkpoint (optimistic)")
    plots.save_figure(fig, "08_table2", FIGURES); report.figure(fig, "Devel UAR of each model, ours and the paper's", "table2"); plt.show()
t2
"""),
        md("## Table 3: ablation"),
        code("""
t3 = table3(runs, paper_models=False, models=ablation_models(runs))
report.heading("Table 3: ablation")
report.table(t3.drop(columns=["weights"]), caption="Devel scores in %, ours (mean ± std over seeds) beside the paper's")
ablated = ablation_models(runs)
ablation_runs = runs[runs.setting.notna() & pd.Series(list(zip(runs.model, runs.sample_rate))).isin(ablated).to_numpy()]
gains = ablation_gains(summarise(ablation_runs, by=["model", "sample_rate", "setting"]), metric="best_devel_uar") if len(ablation_runs) else None
if gains is not None and gains["ours_mean"].notna().any():
    fig = plots.plot_ablation_gains(gains, title="Ablation, devel UAR (best, optimistic)")
    plots.save_figure(fig, "08_ablation", FIGURES); report.figure(fig, "Ablation: each setting, ours and the paper's", "ablation"); plt.show()
t3
"""),
        md("## Fusion"),
        code("""
fused = runs[runs.model == "fusion"]
if len(fused):
    pairs = prof["fusion_branches"] if fusion_branches is None else [tuple(b) for b in fusion_branches]
    t_fusion = fusion_table(runs, pairs)
    report.heading("Fusion of two networks")
    report.table(t_fusion.drop(columns=["weights"]), caption="The fusion variants beside both single models, in %")
    display(t_fusion)
else:
    print("no fusion runs under", root, "(run 07_fusion)")
"""),
        md("""
## The best single model: confusion matrix, learning curve, t-SNE map and SVM

The run with the highest **last** devel UAR (not the best-checkpoint score, which is itself
selected on devel). Its embeddings are recomputed from its best checkpoint.
"""),
        code("""
singles = runs[(runs.status == "finished") & (runs.model != "fusion") & (runs.setting == grid.FULL_SETTING)]
if singles.empty:
    raise RuntimeError(f"no finished full-recipe run under {root}: run 04_model_comparison first")
best = singles.sort_values("last_devel_uar", ascending=False).iloc[0]
run = Path(best.run_dir)
label = grid.model_label(best.model, int(best.sample_rate))
metrics = read_json(run / "metrics.json")
ckpt_name = "best_ema" if "best_ema" in metrics["checkpoints"] else "best_plain"
dev = metrics["checkpoints"][ckpt_name]["splits"]["devel"]
report.heading(f"The best single model: {label} (seed {best.seed})")
fig = plots.plot_confusion(np.array(dev["confusion_matrix"]), metrics["classes"], title=f"{label}, devel, {ckpt_name} (row-normalised)")
plots.save_figure(fig, "08_confusion", FIGURES); report.figure(fig, f"Devel confusion matrix of {label}, {ckpt_name} checkpoint", "confusion"); plt.show()
fig = plots.plot_learning_curves(pd.read_csv(run / "history.csv"))
plots.save_figure(fig, "08_learning_curves", FIGURES); report.figure(fig, f"Learning curves of {label}", "learning_curves"); plt.show()
"""),
        code("""
data = prepare_corpus(corpus, data_dir)
sets = extract_embeddings(run / "checkpoints" / f"{ckpt_name}.pt", data, splits=data.splits, cache_dir=cache_dir, device=device)
points, idx = tsne_2d(sets["devel"].embeddings, seed=seed, perplexity=perplexity, n_threads=1)
fig = plots.plot_tsne(points, sets["devel"].labels[idx], data.classes, title=f"t-SNE of {label} embeddings (devel)")
plots.save_figure(fig, "08_tsne", FIGURES); report.figure(fig, f"t-SNE map of {label} embeddings, devel clips (the paper's Figure 2)", "tsne"); plt.show()
svm = fit_linear_svm(sets["train"], sets["devel"], seed=seed, test_set=sets.get("test"))
svm_row = svm_beside_network(svm, metrics["checkpoints"][ckpt_name]["splits"], f"{label} network ({ckpt_name})")
svm_row[["devel UAR", "test UAR"]] *= 100
svm_row["paper devel UAR"] = [None, grid.PAPER_SVM_DEVEL_UAR]
report.table(svm_row, caption="Linear SVM on the embeddings vs the network's own classifier (devel UAR of both is selected on devel: optimistic)")
svm_row
"""),
        md("## Write the report"),
        code("""
paths = report.write(report_dir, stem=f"report-{profile}")
print("report:", {k: str(v) for k, v in paths.items()})
"""),
    ]


BUILDERS = {"04_model_comparison": nb04, "05_ablation": nb05, "07_fusion": nb07, "08_report": nb08}
