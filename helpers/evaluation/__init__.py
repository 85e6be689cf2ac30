"""Evaluation: the point metrics and their bootstrap intervals (:mod:`.metrics`), scoring a model
and writing prediction tables and submissions (:mod:`.scoring`), fast scoring copies: folded
BatchNorm, bf16, int8 (:mod:`.inference`), scoring audio files with a checkpoint (:mod:`.predict`),
embeddings with their linear SVM and t-SNE (:mod:`.embeddings`), the two-stage model's scores
(:mod:`.two_stage`), learning curves (:mod:`.curves`), and reviewing detections (:mod:`.review`,
:mod:`.calibration`). Long field recordings (scanning, events and their scores) are
:mod:`helpers.recordings`.

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
from helpers.evaluation.predict import predict_files

__all__ = [
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
