"""Evaluation: the point metrics and their bootstrap intervals (:mod:`.metrics`), scoring a model
and writing prediction tables and submissions (:mod:`.scoring`), fast scoring copies: folded
BatchNorm, bf16, int8 (:mod:`.inference`), scoring audio files with a checkpoint (:mod:`.predict`),
embeddings with their linear SVM and t-SNE (:mod:`.embeddings`), and long field recordings:
scanning them (:mod:`.scan`: ``from helpers.evaluation.scan import scan``; the function is not
re-exported, so ``helpers.evaluation.scan`` stays the module), windows to merged detections
(:mod:`.detections`) and event-based precision, recall and listening effort against reference
annotations (:mod:`.events`).

None of these imports the training engine: a checkpoint is all they need.
"""

from helpers.evaluation.embeddings import (
    confused_pairs,
    extract_embeddings,
    fit_linear_svm,
    svm_beside_network,
    tsne_2d,
)
from helpers.evaluation.metrics import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    mean_average_precision,
    per_class_recall,
    unweighted_average_recall,
)
from helpers.evaluation.detections import align_recordings, call_score, detect_events
from helpers.evaluation.events import event_scores, listening_effort, match_events, precision_recall_curve_events
from helpers.evaluation.predict import predict_files

__all__ = [
    "align_recordings",
    "call_score",
    "detect_events",
    "event_scores",
    "listening_effort",
    "match_events",
    "precision_recall_curve_events",
    "accuracy",
    "classification_metrics",
    "confused_pairs",
    "confusion_matrix",
    "extract_embeddings",
    "fit_linear_svm",
    "mean_average_precision",
    "per_class_recall",
    "predict_files",
    "svm_beside_network",
    "tsne_2d",
    "unweighted_average_recall",
]
