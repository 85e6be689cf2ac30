"""Speed of training, feature extraction and evaluation, measured against the device's own limit.

``python -m helpers bench`` times the training loop's own step for every model and sample rate
and prints ONE table, written also as JSON (default ``runs/bench/bench-<device>.json``):

    model, rate      the registry name and the sample rate in Hz (16 kHz: 150 x 64 log-mels, 8 kHz: 75 x 64)
    precision        fp32 on CPU (with ``--cpu-amp`` a bf16-autocast row too); bf16-autocast on
                     CUDA when ``TrainConfig.amp`` (the default)
    s/step, clips/s  mean wall-clock seconds per timed step; batch / s_per_step
    GFLOP/step       model FLOPs of one training step: 3 x forward FLOPs of one clip x batch
                     (forward 1x, backward 2x; :func:`helpers.models.cost.forward_flops` counts the
                     conv and linear layers, 2 FLOPs per multiply-accumulate)
    TFLOP/s          GFLOP/step / s_per_step / 1000
    matmul, conv     the two reference kernels, TFLOP/s, measured on the same device just before
                     the row's timed steps, in the row's precision (fp32; bf16 for a bf16-autocast
                     row) and, for the convolution, in the step's memory layout (channels-last when
                     ``TrainConfig.channels_last``, the default); best of a few repeats each:
                     a dense square matmul (2048^3 on CPU, 8192^3 on CUDA; 2 n^3 FLOPs) and a dense
                     3x3 convolution, stride 1, same padding, C -> C channels (CPU: batch 8, 256
                     channels, 32 x 32; CUDA: batch 64, 512 channels, 64 x 64; 2 FLOPs per
                     multiply-accumulate, as the model's count)
    ceiling          which of the two was faster; its TFLOP/s is the row's ceiling: the fastest
                     dense kernel the device runs in that precision and layout at that moment
    eff.             TFLOP/s / ceiling TFLOP/s: the share of the machine's practical peak that the
                     training step reaches. Both are measured in one run a moment apart, so the
                     ratio holds on a shared, noisy machine where absolute speeds do not. A step
                     cannot outrun the fastest dense kernel, so a value above 100 % means the
                     ceiling was measured wrong (too low: a slow repeat, a kernel the library does
                     not run at full speed): the cell is marked ``!`` and a WARNING line follows
                     the row; the row's ``above_ceiling`` is true in the JSON.
    peak MiB         memory of the step. CUDA: ``torch.cuda.max_memory_allocated`` over the timed
                     steps (stats reset just before) minus what was allocated before the model was
                     built. CPU: the peak resident set size over the timed steps (Linux VmHWM,
                     reset just before through /proc/self/clear_refs) minus the resident size
                     before the model was built, taken after glibc ``malloc_trim`` handed back
                     the heap that earlier rows freed and after an untimed batch-of-2 step mapped
                     the kernels' one-time memory. Both cover weights, gradients, Adam state, the
                     EMA copy and activations, not the bank of random log-mels. The CPU figure is
                     approximate (repeats differ by ~10 %); "-" where it cannot be measured.

The step is the training loop's (:func:`helpers.training.train`): indices from
:class:`helpers.training.sampler.BalancedBatchSampler` (2 x 32 for MixUp), the step function of
:func:`helpers.training.steps.make_step_function` with ``TrainConfig`` defaults (first BN, SpecAugment,
MixUp, rest of the model, BCE loss, Adam) and the EMA update, on random log-mels held on the
device. Warm-up steps are not timed; the host waits for the device only once, at the end of the
timed steps (``float(loss)``, CUDA synchronize).

Under the table, two more measurements (also in the JSON):

* feature extraction, clips/s: :class:`helpers.features.frontend.LogMel` on in-memory random 16 kHz
  waveforms, batched, on the device; and the whole read + resample + log-mel pipeline
  (:func:`helpers.features.extract.extract_logmels`) on temporary 16 kHz WAV files, at 16 and 8 kHz
  (the files were just written, so they are read from the OS page cache);
* devel evaluation time: :func:`helpers.evaluation.scoring.predict_scores` of CNN10-16k on random clips,
  7000 on CUDA (about the 6,918 devel clips); on CPU 512 by default, extrapolated to 7000 and
  labelled so. One line per scoring precision of :func:`helpers.evaluation.inference.prepare_for_inference`
  that the device offers: CUDA bf16 and fp32; CPU fp32 (folded BatchNorm, what training uses),
  bf16 where the CPU has native bf16, and int8 (CNN6/CNN10).

``python -m helpers bench scan`` is a separate measurement (:mod:`helpers.bench.scanning`): the
real-time factor of :func:`helpers.recordings.scan.scan` on a long 48 kHz WAV (default 10 minutes)
with an untrained checkpoint of each model at full width, per precision (default fp32 and int8;
bf16 on CUDA or a CPU with native bf16), each scan in a fresh process so that the peak resident
memory of scanning a short file (30 s, or 100 s where needed to fill one scoring batch of 64
windows as the long one does) and the long file can be set side by side; the project's speed targets
(CNN10-8k, default hop: >= 100x fp32 and >= 300x int8 on 2 CPU cores, >= 5,000x on a GPU) are
printed beside the figures with whether each was met. It writes
``runs/bench/bench-scan-<device>.json`` and a CSV beside it.

Run from the repository root::

    python -m helpers bench                                   # every model, 16 and 8 kHz
    python -m helpers bench --models cnn10 --rates 16000 --steps 3 --warmup 1 --eval-clips 256
    python -m helpers bench scan --models cnn10 --rates 8000 --precisions fp32 int8 --minutes 10

The package, by job (each name below is also reachable as ``helpers.bench.NAME``):

* :mod:`helpers.bench.probes`: device synchronisation, name, memory in use and at its peak;
* :mod:`helpers.bench.kernels`: the reference kernels and the ceiling (:func:`measure_ceiling`);
* :mod:`helpers.bench.measure`: the measurements (:func:`measure_training`,
  :func:`measure_feature_extraction`, :func:`measure_evaluation`);
* :mod:`helpers.bench.run`: all of them into the JSON record (:func:`run_benchmark`);
* :mod:`helpers.bench.scanning`: the scan benchmark (:func:`run_scan_benchmark`, :func:`measure_scan`,
  :func:`scan_target`, :func:`build_checkpoint`, :func:`write_field_recording`);
* :mod:`helpers.bench.table`: the row keys, the tables, their warnings and the other lines;
* :mod:`helpers.bench.cli`: the command line (:func:`build_parser`, :func:`run_from_args`,
  :func:`build_scan_parser`, :func:`run_scan_from_args`, :func:`main`).
"""

from __future__ import annotations

from helpers.bench.cli import build_parser, build_scan_parser, main, run_from_args, run_scan_from_args
from helpers.bench.kernels import (
    CONV_SHAPE,
    conv_flops,
    MATMUL_REPEATS,
    MATMUL_SIZE,
    measure_ceiling,
    measure_conv_tflops,
    measure_matmul_tflops,
    pick_ceiling,
    REFERENCE_INNER,
    reference_description,
)
from helpers.bench.measure import (
    BANK_CLIPS,
    DEFAULT_EVAL_CLIPS,
    DEFAULT_FEATURE_CLIPS,
    DEFAULT_RATES,
    EVAL_TARGET_CLIPS,
    evaluation_precisions,
    measure_evaluation,
    measure_feature_extraction,
    measure_training,
    N_CLASSES,
    training_precision,
)
from helpers.bench.probes import device_name
from helpers.bench.run import check_models, DEFAULT_STEPS, DEFAULT_WARMUP, run_benchmark
from helpers.bench.scanning import (
    build_checkpoint,
    measure_scan,
    run_scan_benchmark,
    SCAN_TARGETS,
    scan_target,
    write_field_recording,
)
from helpers.bench.table import (
    ABOVE_CEILING_MARK,
    ceiling_warning,
    default_json_path,
    default_scan_json_path,
    format_evaluation,
    format_feature_extraction,
    format_header,
    format_row,
    format_scan_row,
    format_scan_table,
    format_table,
    ROW_KEYS,
    SCAN_ROW_KEYS,
)

# Reachable here as they were from the single-module bench (tests use them).
from helpers.core.hardware import resolve_device
from helpers.models.registry import MODELS

__all__ = [
    "ABOVE_CEILING_MARK",
    "BANK_CLIPS",
    "build_checkpoint",
    "build_parser",
    "build_scan_parser",
    "ceiling_warning",
    "check_models",
    "CONV_SHAPE",
    "conv_flops",
    "DEFAULT_EVAL_CLIPS",
    "DEFAULT_FEATURE_CLIPS",
    "default_json_path",
    "default_scan_json_path",
    "DEFAULT_RATES",
    "DEFAULT_STEPS",
    "DEFAULT_WARMUP",
    "device_name",
    "EVAL_TARGET_CLIPS",
    "evaluation_precisions",
    "format_evaluation",
    "format_feature_extraction",
    "format_header",
    "format_row",
    "format_scan_row",
    "format_scan_table",
    "format_table",
    "main",
    "MATMUL_REPEATS",
    "MATMUL_SIZE",
    "measure_ceiling",
    "measure_conv_tflops",
    "measure_evaluation",
    "measure_feature_extraction",
    "measure_matmul_tflops",
    "measure_scan",
    "measure_training",
    "MODELS",
    "N_CLASSES",
    "pick_ceiling",
    "reference_description",
    "REFERENCE_INNER",
    "resolve_device",
    "ROW_KEYS",
    "run_benchmark",
    "run_from_args",
    "run_scan_benchmark",
    "run_scan_from_args",
    "SCAN_ROW_KEYS",
    "SCAN_TARGETS",
    "scan_target",
    "training_precision",
    "write_field_recording",
]
