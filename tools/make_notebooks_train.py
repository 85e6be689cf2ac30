"""Notebook 03 (training); imported by tools/make_notebooks.py."""
from __future__ import annotations

from notebook_builder import code, md

SETUP = """
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Audio, Markdown, display

from helpers.reporting import plots
from helpers.data.audio import load_clip
from helpers.data.corpus import read_corpus
from helpers.data.named import prepare_corpus
from helpers.core.hardware import configure_threads
from helpers.training.loop import TrainConfig, train

configure_threads(num_threads)
FIGURES = Path(figures_dir)
"""


def nb03():
    return [
        md("""
# 03 · Training one model: balanced sampling, SpecAugment, MixUp and EMA

* **What it shows:** one training run with every ingredient of the paper switchable, its learning
  curves (plain model and its exponential moving average), the confusion matrix, per-class recall,
  and the clips it gets wrong, to listen to.
* **What it needs first:** a corpus (`00_data`). Features are computed and cached on first use.

The parameters cell below **is** the configuration: every name maps one-to-one onto
`helpers.training.loop.TrainConfig`, which papermill batch runs and Python scripts use too. Its defaults
are sized for a laptop CPU (a few minutes); the paper's settings are given in the comments. A full
paper run (60,000 iterations) needs a GPU.
"""),
        code("""
# data
corpus = "demo"                 # "demo", "synthetic" or a corpus folder
corpus_root = None              # batch runs: read this corpus folder; `corpus` stays the config's name for it
data_dir = "../data"
cache_dir = "../data/cache"
sample_rate = 8000              # paper: 8000 for the model comparison, 16000 for the best models
# model
model = "cnn10"                 # cnn6, cnn10, mobilenetv1, resnet22, wrn28_2
model_options = {}              # constructor options, e.g. {"channels": [16, 32, 64, 128]}
# sampling and augmentation
sampler = "balanced"            # paper: "balanced"; or "uniform"
spec_augment = True
spec_augment_mode = "batch"     # paper: "batch" (one mask per mini-batch); authors' code: "per_example"
spec_time_width = 16
spec_freq_width = 8
spec_max_stripes = 2
mixup = True
mixup_alpha = 1.0               # authors' code: 1.0; the paper says alpha < 1
time_stretch = False            # paper: tried, no gain
pitch_shift = False             # paper: tried, no gain
wave_augment_copies = 4
# optimisation
batch_size = 32
iterations = 200                # paper: 60000
lr = 1e-3
amsgrad = False                 # authors' code: True
# EMA
ema = True
ema_decay = 0.98                # paper: 0.995 (an average over ~200 steps, too slow for a 200-step run)
ema_start = 100                 # paper: 15000
ema_mode = "correct"            # or "reference": the authors' store/restore bug
# evaluation
eval_every = 25                 # paper: 200
select_from = 0
checkpoint_every = 100
eval_batch_size = None          # clips per scoring batch; None: 512 on CUDA, 64 on CPU
score_train = False             # also score the train split at the end
# reproducibility and hardware
seed = 0
device = "auto"
amp = True                      # bf16 autocast on CUDA
cpu_amp = False                 # bf16 autocast on the CPU too: ~2x on CPUs with AVX512-BF16/AMX (a deviation)
channels_last = True
num_threads = None
log_every = 10
# output
out_dir = "../runs/train"
run_name = None
figures_dir = "../figures"
n_listen = 4                    # misclassified devel clips to listen to
""", parameters=True),
        code(SETUP + """
config = TrainConfig.from_namespace(globals())
display(pd.Series(config.to_dict(), name="value").to_frame())
data = read_corpus(corpus_root) if corpus_root else prepare_corpus(corpus, data_dir)
print("classes:", data.classes)
print("run folder:", config.run_dir())
"""),
        md("""
## Train

Each step draws a mini-batch from the cached log-mels (held in memory, on the GPU when there is
one), applies SpecAugment after the model's first BatchNorm, mixes pairs of examples with MixUp
(drawing 64 and mixing them into 32, as the authors' code does), and takes an Adam step. The EMA
copy is updated after every step from `ema_start` on. Every `eval_every` steps both the plain and
the EMA model are scored on devel. An interrupted run resumes from its last checkpoint.
"""),
        code("""
result = train(config, corpus=data, progress=True)
print("timings (s):", result.timings)
"""),
        md("""
## Learning curves

Devel UAR of the plain model (solid) and of its EMA (dashed), and the training loss. MixUp makes
the training loss a poor guide (the targets are mixtures); the devel curve is what matters.
"""),
        code("""
fig = plots.plot_learning_curves(result.history)
plots.save_figure(fig, "03_learning_curves", FIGURES); plt.show()
result.history.round(3).tail(10)
"""),
        md("""
## Scores, honestly labelled

The `best_*` checkpoints were **chosen by their devel UAR**: their devel score is the best of many
evaluations and therefore optimistic (the paper's 93.6 % devel UAR is such a number). The `last_*`
checkpoints, and every test score, were not selected on and estimate performance on new data.
"""),
        code("""
summary = result.summary()
summary["uar"] = summary["uar"].round(3); summary["map"] = summary["map"].round(3)
summary.pivot_table(index=["checkpoint", "step"], columns="split", values=["uar", "map"])
"""),
        code("""
which = next(c for c in ("best_ema", "best_plain", "last_plain") if c in result.metrics["checkpoints"])
dev = result.metrics["checkpoints"][which]["splits"]["devel"]
print(f"{which}: devel UAR {dev['uar']:.3f}, mAP {dev['map']:.3f} ({dev['note']})")
fig = plots.plot_confusion(np.array(dev["confusion_matrix"]), result.classes, title=f"devel, {which} (row-normalised)")
plots.save_figure(fig, "03_confusion_devel", FIGURES); plt.show()
recall = pd.Series(dev["per_class_recall"], name="recall")
ax = recall.plot.barh(figsize=(5, 2.5), xlim=(0, 1), title=f"per-class recall, devel, {which}")
plots.save_figure(ax.figure, "03_per_class_recall", FIGURES); plt.show()
"""),
        md("""
## Listening to the mistakes

Devel clips the chosen checkpoint got wrong, with the score it gave each class. Mistakes often
have a reason you can hear: a faint call under loud background, a call cut at the clip edge.
"""),
        code("""
pred = pd.read_csv(result.run_dir / "predictions" / f"devel-{which}.csv")
wrong = pred[pred.label != pred.prediction]
print(f"{len(wrong)} of {len(pred)} devel clips misclassified")
paths = data.split("devel").set_index("filename")["path"]
for row in wrong.head(n_listen).itertuples():
    scores = {c: round(getattr(row, f"score_{c}"), 2) for c in result.classes}
    display(Markdown(f"**{row.filename}**: true *{row.label}*, predicted *{row.prediction}*; scores {scores}"))
    display(Audio(load_clip(paths[row.filename], sample_rate=16000, length=0), rate=16000))
"""),
        md("""
## What the run folder holds

`config.json`, `record.json` (versions, machine, corpus checksum, timings), `history.csv`,
`metrics.json`, `predictions/{split}-{checkpoint}.csv`, `submission-test.csv` and
`checkpoints/` (loadable with `torch.load(..., weights_only=True)`). A checkpoint scores any audio
files from the command line: `python -m helpers predict RUN/checkpoints/best_ema.pt FOLDER`.
"""),
        code("""
sorted(str(p.relative_to(result.run_dir)) for p in result.run_dir.rglob("*") if p.is_file())
"""),
    ]


BUILDERS = {"03_train": nb03}
