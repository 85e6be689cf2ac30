"""Does a code change keep results? Train two tiny configs with this checkout and with another
commit, on the same machine, and compare run keys and the final weights bit for bit.

    python benchmarks/same_weights.py 049294c     # the commit before the subpackage redesign

The other commit is checked out in a temporary git worktree and imported first on sys.path (its
``helpers`` may have the old flat layout: ``helpers.train`` instead of ``helpers.training``).
Each side builds its own synthetic corpus and feature cache, so the features are compared too.
Prints one line per config and exits 1 when anything differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAIN_BOTH_CONFIGS = r"""
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
import torch
try:
    from helpers.training import TrainConfig, train
    from helpers.data.corpus import read_corpus
    from helpers.data.corpora.synthetic import make_synthetic_corpus
except ImportError:  # the flat layout before the redesign
    from helpers.train import TrainConfig, train
    from helpers.corpus import read_corpus
    from helpers.synthetic import make_synthetic_corpus
out = sys.argv[2]
make_synthetic_corpus(out + "/corpus", n_clips=150, seed=1)
corpus = read_corpus(out + "/corpus", name="cmp")
results = {}
for extra in (dict(model="cnn10"), dict(model="cnn6", mixup=False, ema_mode="reference")):
    cfg = TrainConfig(corpus="unused", sample_rate=8000, iterations=40, eval_every=20, ema_start=10,
                      checkpoint_every=20, batch_size=8, model_options={"channels": [8, 16, 32, 64]},
                      cache_dir=out + "/cache", out_dir=out + "/runs", device="cpu", num_threads=1, seed=3, **extra)
    run = train(cfg, corpus=corpus, progress=False)
    weights = torch.load(run.run_dir / "checkpoints" / "last.pt", weights_only=True)["state_dict"]
    digest = hashlib.sha256(b"".join(weights[k].numpy().tobytes() for k in sorted(weights))).hexdigest()[:16]
    results[extra["model"]] = {"key": cfg.key(), "weights": digest}
print("RESULT " + json.dumps(results))
"""


def train_with(source: Path, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN_BOTH_CONFIGS, str(source), str(out)],
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"training with {source} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory(prefix="same-weights-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), argv[0]], cwd=ROOT, check=True)
        try:
            before = train_with(old, Path(tmp) / "out-old")
            after = train_with(ROOT, Path(tmp) / "out-new")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    same = True
    for model in before:
        ok = before[model] == after[model]
        same &= ok
        print(
            f"{model}: key {before[model]['key']} -> {after[model]['key']}, weights {before[model]['weights']} -> "
            f"{after[model]['weights']}: {'identical' if ok else 'DIFFERENT'}"
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
