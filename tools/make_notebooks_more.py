"""Notebook 06 (embeddings, SVM, t-SNE); imported by tools/make_notebooks.py."""
from __future__ import annotations

from notebook_builder import code, md


def nb06():
    return [
        md("""
# 06 · Embeddings: t-SNE map and a linear SVM

* **What it shows:** the 512-dimensional embeddings a trained network computes before its last
  layer (the penultimate fully-connected layer, after ReLU), a two-dimensional t-SNE map of them
  coloured by class (the paper's Figure 2), and a linear SVM trained on the embeddings, as the
  challenge baseline did with auDeep features. The paper reports 88.8 % devel UAR for a linear
  SVM on CNN10 embeddings, below the network's own 93.6 %.
* **What it needs first:** a finished training run (`03_train`). By default the most recent run
  under `runs/train` is used.
"""),
        code("""
corpus = "demo"
data_dir = "../data"
cache_dir = "../data/cache"
runs_dir = "../runs/train"      # where to look for the latest finished run
run_dir = None                  # or the path of one run folder
checkpoint = "best_ema"         # best_ema, best_plain (or last.pt via "last")
svm_Cs = [0.001, 0.01, 0.1, 1.0, 10.0]
class_weight = None             # None or "balanced"
tsne_split = "devel"
perplexity = 30.0
seed = 0
device = "auto"
figures_dir = "../figures"
""", parameters=True),
        code("""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from helpers.reporting import plots
from helpers.experiments.collect import latest_finished_run
from helpers.data.named import prepare_corpus
from helpers.evaluation.embeddings import confused_pairs, extract_embeddings, fit_linear_svm, svm_beside_network, tsne_2d
from helpers.core.hardware import configure_threads
from helpers.core.provenance import read_json

configure_threads()
FIGURES = Path(figures_dir)
run = Path(run_dir) if run_dir else latest_finished_run(runs_dir)
ckpt_path = run / "checkpoints" / ("last.pt" if checkpoint == "last" else f"{checkpoint}.pt")
if not ckpt_path.is_file():
    ckpt_path = run / "checkpoints" / "best_plain.pt"   # runs without EMA have no best_ema
config = read_json(run / "config.json")
print(f"run {run.name}: {config['model']} at {config['sample_rate']} Hz, checkpoint {ckpt_path.name}")
data = prepare_corpus(corpus, data_dir)
sets = extract_embeddings(ckpt_path, data, splits=data.splits, cache_dir=cache_dir, device=device)
pd.DataFrame({s: {"clips": len(e.labels), "embedding size": e.embeddings.shape[1]} for s, e in sets.items()}).T
"""),
        md("""
## t-SNE map

t-SNE places clips so that neighbours in the embedding space stay neighbours on the page. Distances
between far-apart groups mean little; what matters is which classes form tight islands and which
overlap (in the paper, background and chimpanzee overlap most).
"""),
        code("""
emb = sets[tsne_split]
points, idx = tsne_2d(emb.embeddings, seed=seed, perplexity=perplexity, n_threads=1)
fig = plots.plot_tsne(points, emb.labels[idx], data.classes, title=f"t-SNE of {config['model']} embeddings ({tsne_split})")
plots.save_figure(fig, "06_tsne", FIGURES); plt.show()
"""),
        md("""
## A linear SVM on the embeddings

Embeddings are standardised with the train statistics; C is chosen by devel UAR, so the SVM's
devel score, like a best checkpoint's, is optimistic. `class_weight="balanced"` weighs each class
by the inverse of its frequency, the SVM's answer to the imbalance.
"""),
        code("""
svm = fit_linear_svm(sets["train"], sets["devel"], Cs=svm_Cs, class_weight=class_weight, seed=seed,
                     test_set=sets.get("test"))
display(svm.table)
fig = plots.plot_svm_c_curve(svm.table)
plots.save_figure(fig, "06_svm_c_curve", FIGURES); plt.show()
"""),
        code("""
metrics = read_json(run / "metrics.json")
network = metrics["checkpoints"].get(ckpt_path.stem, {}).get("splits", {})
print(svm.devel_metrics["note"])
svm_beside_network(svm, network, "network (its own classifier)").set_index("classifier").round(3)
"""),
        md("## Which classes the SVM confuses"),
        code("""
cm = np.array(svm.devel_metrics["confusion_matrix"])
fig = plots.plot_confusion(cm, data.classes, title="devel, linear SVM on embeddings (row-normalised)")
plots.save_figure(fig, "06_svm_confusion", FIGURES); plt.show()
confused_pairs(cm, data.classes)
"""),
    ]


BUILDERS = {"06_embeddings": nb06}
