"""Writes notebooks/NN_*.ipynb (no outputs). Run: .venv/bin/python tools/make_notebooks.py"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_builder import code, md, write  # noqa: E402

NB = Path(__file__).resolve().parent.parent / "notebooks"

COMMON_SETUP = """
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Audio, Markdown, display

from helpers.core.hardware import configure_threads

configure_threads()
pd.set_option("display.width", 120)
FIGURES = Path(figures_dir)
"""


def nb00():
    return [
        md("""
# 00 · The data: build or locate a corpus, and validate it

This notebook gets a corpus onto disk and checks it before anything else touches it.

* **What it shows:** the challenge layout every notebook reads, the named corpora (`demo`, a
  small real corpus cut from public recordings; `synthetic`, generated calls for tests), and the
  validation report.
* **What it needs first:** the project environment (`make setup`, or any `make` target). The demo
  corpus reads its recordings from a mirror folder (`PRIMATE_DEMO_MIRROR`) or downloads them once
  (checked against their SHA-256), so the first run needs either the mirror or the network.
"""),
        md("""
## Parameters
`corpus` is `"demo"`, `"synthetic"` or the path of any folder in the challenge layout (for
example the real ComParE 2021 primate corpus, `dist/`). `on_error="exclude"` drops faulty files
instead of stopping, and records what it dropped.
"""),
        code("""
corpus = "demo"          # "demo", "synthetic" or a path to a corpus folder
data_dir = "../data"     # where named corpora, downloads and caches live
n_clips = 1000           # synthetic only: clips over the three splits
seed = 0                 # synthetic only: generator seed
on_error = "raise"       # "raise" or "exclude"
figures_dir = "../figures"
""", parameters=True),
        code(COMMON_SETUP + """
from helpers.data.named import corpus_dir, prepare_corpus
"""),
        md("""
## The challenge layout

The ComParE 2021 primate corpus comes as a folder with `wav/` (one file per clip, named
`train_00001.wav`, `devel_00001.wav`, `test_00001.wav`, ...) and `lab/` with one CSV per split,
header `filename,label`. Test labels are `?`: they were hidden from participants. Our demo and
synthetic corpora are written in the same layout, so one code path reads them all; the class list
is read from `lab/train.csv`, never written into the code.
"""),
        code("""
root = corpus_dir(corpus, data_dir, n_clips=n_clips, seed=seed)
data = prepare_corpus(corpus, data_dir, n_clips=n_clips, seed=seed, on_error=on_error)
print(f"corpus {data.name!r} at {root}")
print("classes (in index order):", data.classes)
data.counts()
"""),
        md("""
## Validation

`read_corpus` checks everything before returning and lists **every** problem at once, each with
the file, the line and a fix. Errors (missing or unreadable audio, truncated files, NaN samples,
unknown or empty labels, duplicate rows, `?` outside test) stop the run. Warnings (files in no
label file, stereo files, mixed sample rates, clips longer than the clip length) are listed and
handled in a stated way: ignored, averaged to mono, resampled, truncated.
"""),
        code("""
print(data.report.format(max_lines=30))
data.report.to_frame().head(20)
"""),
        code("""
data.table.head()
"""),
        md("""
### What an error looks like

A copy of a few files with three deliberate mistakes: a missing file, a misspelt label and a
duplicate row. The report names each one.
"""),
        code("""
import shutil, tempfile
from helpers.data.corpus import validate_corpus

broken = Path(tempfile.mkdtemp()) / "broken"
(broken / "wav").mkdir(parents=True); (broken / "lab").mkdir()
sample = data.table[data.table.split.isin(["train", "devel"])].groupby("split").head(3)
for row in sample.itertuples():
    shutil.copy(row.path, broken / "wav" / row.filename)
for split in ["train", "devel"]:
    rows = sample[sample.split == split][["filename", "label"]]
    rows.to_csv(broken / "lab" / f"{split}.csv", index=False)
(broken / "wav" / sample.iloc[0].filename).unlink()                       # a missing file
devel_csv = broken / "lab" / "devel.csv"
devel_csv.write_text(devel_csv.read_text().replace(sample[sample.split == "devel"].iloc[0].label, "chimp", 1))
with open(devel_csv, "a") as fh:                                          # a duplicate row
    fh.write(f"{sample.iloc[1].filename},{sample.iloc[1].label}\\n")
print(validate_corpus(broken).format())
shutil.rmtree(broken.parent)
"""),
        md("""
## Where the demo recordings come from

For the demo corpus, `manifest.csv` records for every clip its source recording, URL, checksum,
offset, license and attribution. Splits are made **by source recording**, so no recording
contributes clips to two splits: otherwise the devel score would measure how well the model
recognises a recording, not a species.
"""),
        code("""
manifest_path = Path(data.root) / "manifest.csv"
if manifest_path.exists():
    manifest = pd.read_csv(manifest_path)
    display(manifest.groupby(["label", "split"]).source_recording.nunique().unstack().rename_axis(None, axis=1)
            .style.set_caption("source recordings per class and split"))
    display(manifest[["attribution", "license"]].drop_duplicates().reset_index(drop=True))
else:
    print("not the demo corpus: no manifest")
"""),
    ]


def nb01():
    return [
        md("""
# 01 · Exploring the data: classes, imbalance, durations, and what the calls sound like

* **What it shows:** how many clips each class has in each split, why the imbalance matters (and
  how the paper answers it: a balanced sampler, and UAR as the metric), how long the clips are, and
  one log-mel spectrogram and audio player per class.
* **What it needs first:** `00_data` (or any corpus in the challenge layout).
"""),
        code("""
corpus = "demo"
data_dir = "../data"
n_clips = 1000
seed = 0
sample_rate = 16000      # rate of the example spectrograms
figures_dir = "../figures"
examples_per_class = 1
""", parameters=True),
        code(COMMON_SETUP + """
import numpy as np
import torch

from helpers.reporting import plots
from helpers.data.audio import CLIP_SECONDS, load_clip
from helpers.data.named import CLASS_DESCRIPTIONS, prepare_corpus
from helpers.features.extract import LogMel
from helpers.evaluation.metrics import accuracy, unweighted_average_recall

data = prepare_corpus(corpus, data_dir, n_clips=n_clips, seed=seed)
"""),
        md("## Clips per class and split"),
        code("""
counts = data.counts()
shares = (counts / counts.sum()).round(3).add_suffix(" share")
display(pd.concat([counts, shares], axis=1))
fig = plots.plot_class_counts(counts.loc[data.classes])
plots.save_figure(fig, "01_class_counts", FIGURES); plt.show()
"""),
        md("""
## Why the imbalance matters

In the challenge corpus half of the clips are background and the rarest class (guenons) has
2.3 %. A classifier that always answers the majority class gets a high **accuracy** but learns
nothing. The **unweighted average recall** (UAR: the mean over classes of the fraction of each
class recognised) gives every class the same weight, so the same classifier scores 1/K. That is
why UAR is the challenge metric, and why the paper trains with a **balanced sampler** that fills
each mini-batch with equal numbers of every class (otherwise most batches of 32 hold no guenon at
all).
"""),
        code("""
train = data.split("train")
y = train["class_index"].to_numpy()
majority = np.bincount(y, minlength=len(data.classes)).argmax()
always_majority = np.full_like(y, majority)
print(f"always '{data.classes[majority]}': accuracy {accuracy(y, always_majority):.3f}, "
      f"UAR {unweighted_average_recall(y, always_majority, len(data.classes)):.3f} (chance = {1/len(data.classes):.3f})")
p = np.bincount(y, minlength=len(data.classes)) / len(y)
print("probability that a uniform batch of 32 holds no clip of each class:")
print({c: round(float((1 - p[k]) ** 32), 3) for k, c in enumerate(data.classes)})
"""),
        md("""
## Durations

Clips have variable length; every clip is zero-padded at the end (or truncated) to the longest
clip of the challenge corpus, 47,860 samples = 2.99 s at 16 kHz, as the authors did. Padding is
silence: it shows as -100 dB in the log-mel.
"""),
        code("""
fig = plots.plot_durations(data.table, clip_seconds=CLIP_SECONDS)
plots.save_figure(fig, "01_durations", FIGURES); plt.show()
data.table.groupby("label").duration.describe().round(2)
"""),
        md("""
## What each class looks and sounds like

One example per class from train: its log-mel spectrogram (64 mel bands, 10 Hz to half the sample
rate, dB) and the audio. Listen for what the network has to tell apart.
"""),
        code("""
logmel = LogMel(sample_rate=sample_rate)
examples = train.groupby("label", sort=False).head(examples_per_class)
examples = examples.set_index("label").loc[[c for c in data.classes if c in set(examples.label)]].reset_index()
waves = [load_clip(p, sample_rate=sample_rate) for p in examples.path]
with torch.no_grad():
    mels = logmel(torch.from_numpy(np.stack(waves))).numpy()
fig = plots.plot_logmel_grid(list(mels), [f"{r.label} ({r.filename})" for r in examples.itertuples()], sample_rate)
plots.save_figure(fig, "01_example_logmels", FIGURES); plt.show()
"""),
        code("""
for row, wave in zip(examples.itertuples(), waves):
    display(Markdown(f"**{row.label}** ({row.filename}, {row.duration:.2f} s): {CLASS_DESCRIPTIONS.get(row.label, '')}"))
    display(Audio(load_clip(row.path, sample_rate=sample_rate, length=0), rate=sample_rate))
"""),
    ]


def nb02():
    return [
        md("""
# 02 · Feature extraction: log-mel spectrograms, computed once and cached

* **What it shows:** the exact front end of the paper (FACTS section 2), the features of every
  split at 16 kHz and 8 kHz, computed once and cached on disk, the mean spectrum of each class, what
  8 kHz loses, and how long extraction takes.
* **What it needs first:** `00_data`.

The settings: mono audio, zero-padded to 2.99 s; STFT with a 1024-sample periodic Hann window and
a hop of 320 samples, centred with reflect padding; power spectrum; 64 mel bands (Slaney scale and
Slaney area normalisation) from 10 Hz to half the sample rate; `10·log10(max(S, 1e-10))`, no top-dB
clipping. At 16 kHz a clip gives 150 frames × 64 bands; at 8 kHz, with the same window and hop in
samples, 75 × 64. There is no per-clip normalisation: each model starts with a BatchNorm over the
mel bands.
"""),
        code("""
corpus = "demo"
data_dir = "../data"
n_clips = 1000
seed = 0
sample_rates = [16000, 8000]
cache_dir = "../data/cache"
device = "auto"          # "auto" uses the GPU when there is one
figures_dir = "../figures"
""", parameters=True),
        code(COMMON_SETUP + """
import time

import numpy as np
import torch

from helpers.reporting import plots
from helpers.data.named import prepare_corpus
from helpers.features.extract import FeatureSettings, load_features
from helpers.core.hardware import resolve_device

data = prepare_corpus(corpus, data_dir, n_clips=n_clips, seed=seed)
dev = resolve_device(device)
print("device:", dev)
"""),
        md("""
## Compute (or load) the features of every split

The cache key is a hash of the settings **and** of every audio file's SHA-256, so changing a
setting or a file gives a new computation, never a stale one. Files are written atomically: an
interrupted run leaves no half-written cache. The second pass below only reads from disk.
"""),
        code("""
features, timings = {}, []
for sr in sample_rates:
    settings = FeatureSettings(sample_rate=sr)
    for split in data.splits:
        for attempt in ("first", "second"):
            t0 = time.perf_counter()
            fs = load_features(data.table, split, settings, cache_dir, data.name, device=dev, progress=False)
            seconds = time.perf_counter() - t0
            timings.append({"sample_rate": sr, "split": split, "pass": attempt, "clips": len(fs.labels),
                            "seconds": round(seconds, 3), "clips/s": round(len(fs.labels) / max(seconds, 1e-9))})
        features[(sr, split)] = fs
    print(sr, "Hz:", settings.to_dict(), "->", fs.features.shape[1:], "(time, mel)")
pd.DataFrame(timings)
"""),
        md("""
## Mean log-mel spectrum per class

Averaged over all train clips and frames. Classes that differ in where their energy lies are
easy to separate; padding (-100 dB) pulls short-clip classes down uniformly.
"""),
        code("""
sr0 = sample_rates[0]
fs = features[(sr0, "train")]
fig = plots.plot_mean_logmel_per_class(fs.features, fs.labels, data.classes,
                                       title=f"Mean log-mel per class (train, {sr0 // 1000} kHz)")
plots.save_figure(fig, "02_mean_logmel_per_class", FIGURES); plt.show()
"""),
        md("""
## 8 kHz versus 16 kHz

At 8 kHz the 64 bands cover 10 Hz to 4 kHz (finer in frequency) and the clip has half as many
frames (75): each model step is about twice as cheap, which is why the paper compares models at
8 kHz. Whatever a class has above 4 kHz is lost.
"""),
        code("""
if len(sample_rates) >= 2:
    a, b = sample_rates[:2]
    i = int(np.argmax(features[(a, "train")].labels >= 0))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    for ax, sr in zip(axes, (a, b)):
        plots.plot_logmel(features[(sr, "train")].features[i], sr, ax=ax,
                          title=f"{features[(sr, 'train')].filenames[i]} at {sr // 1000} kHz")
    fig.tight_layout()
    plots.save_figure(fig, "02_8k_vs_16k", FIGURES); plt.show()
"""),
        md("""
## Timing

First pass: reading, resampling and the log-mel transform; second pass: loading from the cache.
`python benchmarks/bench_features.py` measures extraction throughput on this machine in detail.
"""),
        code("""
pd.DataFrame(timings).groupby(["sample_rate", "pass"])[["clips", "seconds"]].sum().assign(
    clips_per_s=lambda d: (d.clips / d.seconds).round())
"""),
    ]


if __name__ == "__main__":
    NB.mkdir(exist_ok=True)
    builders = {"00_data": nb00, "01_data_exploration": nb01, "02_feature_extraction": nb02}
    from make_notebooks_more import BUILDERS as MORE  # noqa: E402
    from make_notebooks_train import BUILDERS as TRAIN  # noqa: E402
    from make_notebooks_grid import BUILDERS as GRID  # noqa: E402

    builders.update(TRAIN)
    builders.update(MORE)
    builders.update(GRID)
    builders = dict(sorted(builders.items()))
    for name, build in builders.items():
        write(NB / f"{name}.ipynb", build())
        print("wrote", NB / f"{name}.ipynb")
