"""Classifiers of log-mel spectrograms: the paper's five PANNs-style networks and their fusion.

Every model maps a log-mel batch ``(batch, time, mel)`` in dB to ``(logits, embedding)``:

    logits     (batch, n_classes)      raw scores, no sigmoid/softmax inside
    embedding  (batch, embedding_dim)  penultimate FC output after ReLU (>= 0), used for SVMs,
                                       t-SNE and fusion

The forward pass is split in two, because training augments in between (FACTS section 4: the
authors apply SpecAugment and then MixUp to the log-mels *after* the first BatchNorm):

    z = model.normalize(x)               # (batch, time, mel) dB -> (batch, 1, time, mel)
    z = spec_augment(z); z = mixup(z)    # training only, in helpers.training.augment
    logits, embedding = model.forward_normalized(z)

``model(x)`` does both steps at once. Models are created by name through :data:`MODELS`::

    model = create_model("cnn10", n_classes=5)          # n_mels=64 by default

All models share :class:`AudioClassifier`: the BatchNorm over mel bins (``bn0``), the
classification head (:class:`ClassifierHead`), weight initialisation and the ``config`` dict
that a checkpoint stores to rebuild the model (:func:`model_from_config`, :func:`load_model`).
Only the convolutional backbone differs between models.

Architectures follow Kong et al. (2020, "PANNs") as used by the paper; trainable parameter counts
with 64 mel bins and 5 classes reproduce the paper (FACTS section 3), see :data:`PAPER_PARAMETER_COUNTS`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Mel bins of the feature front end (FACTS section 2).
N_MELS = 64
#: Dropout before each of the two FC layers of the head (PANNs).
HEAD_DROPOUT = 0.5
#: Trainable parameters with ``n_mels=64, n_classes=5`` (the paper's figures, FACTS section 3).
PAPER_PARAMETER_COUNTS = {
    "cnn6": 4_569_669,
    "cnn10": 4_951_493,
    "mobilenetv1": 4_261_253,
    "resnet22": 62_605_509,
    "wrn28_2": 1_487_973,
}
#: Keys every checkpoint dict must hold (see :func:`checkpoint_dict`).
CHECKPOINT_KEYS = ("model_config", "state_dict")


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
class AvgPool2x2(nn.Module):
    """2x2 average pooling over (time, mel) that leaves a dimension of size 1 unpooled.

    Same result as ``nn.AvgPool2d(2)`` (floor mode, as PANNs) whenever both dimensions are >= 2.
    Without the size-1 exception a short clip (say 8 frames) would shrink to zero frames in the
    deeper models (ResNet22 halves time 5 times) and crash; with it any clip length works and the
    global pooling of the head takes care of the rest.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, time, mel)`` -> ``(batch, channels, time // 2, mel // 2)``."""
        kernel = (2 if x.shape[-2] >= 2 else 1, 2 if x.shape[-1] >= 2 else 1)
        if kernel == (1, 1):
            return x
        return F.avg_pool2d(x, kernel_size=kernel)


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed by a BatchNorm, whose shift makes a bias redundant (PANNs).
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                     groups=groups, bias=False)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, n_convs: int = 1) -> nn.Sequential:
    """``n_convs`` x (conv k x k, 'same' padding - BatchNorm - ReLU); PANNs' ConvBlock without its pooling."""
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [_conv(in_channels if i == 0 else out_channels, out_channels, kernel_size),
                   nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Post-activation residual block: conv3x3-BN-ReLU-dropout-conv3x3-BN, plus shortcut, then ReLU.

    ``stride=2`` halves time and mel. ``pool_stride=True`` does it the PANNs ResNet way (2x2
    average pooling before the first conv and in the shortcut); ``False`` the WRN way (strided
    convolutions). The shortcut is a 1x1 conv + BN whenever the shape changes. ``bn2`` (the last
    BN) is zero-initialised by :func:`init_weights`, so each block starts as the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0,
                 pool_stride: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"BasicBlock stride must be 1 or 2, got {stride}")
        pooled = stride == 2 and pool_stride
        conv_stride = 1 if pool_stride else stride
        self.pool = AvgPool2x2() if pooled else nn.Identity()
        self.conv1 = _conv(in_channels, out_channels, 3, stride=conv_stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv(out_channels, out_channels, 3)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                AvgPool2x2() if pooled else nn.Identity(),
                _conv(in_channels, out_channels, 1, stride=conv_stride),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, T, F)`` -> ``(batch, out_channels, T / stride, F / stride)``."""
        out = F.relu(self.bn1(self.conv1(self.pool(x))), inplace=True)
        out = self.bn2(self.conv2(self.dropout(out)))
        return F.relu(out + self.shortcut(x), inplace=True)


def residual_stage(in_channels: int, out_channels: int, n_blocks: int, stride: int, dropout: float,
                   pool_stride: bool) -> nn.Sequential:
    """``n_blocks`` BasicBlocks; only the first one changes channels and stride."""
    return nn.Sequential(*[
        BasicBlock(in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1,
                   dropout=dropout, pool_stride=pool_stride)
        for i in range(n_blocks)
    ])


class ClassifierHead(nn.Module):
    """PANNs head: global pooling, dropout, FC + ReLU (the embedding), dropout, FC (the logits).

    Pooling: mean over mel, then max + mean over time, summed: a loud short call (max) and a
    steady background (mean) both reach the classifier.
    """

    def __init__(self, in_channels: int, embedding_dim: int, n_classes: int, dropout: float = HEAD_DROPOUT) -> None:
        super().__init__()
        self.dropout_pooled = nn.Dropout(dropout)
        self.fc_embedding = nn.Linear(in_channels, embedding_dim)
        self.dropout_embedding = nn.Dropout(dropout)
        self.fc_logits = nn.Linear(embedding_dim, n_classes)

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, channels, time', mel')`` -> logits ``(batch, n_classes)``, embedding ``(batch, embedding_dim)``."""
        x = feature_map.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        embedding = F.relu(self.fc_embedding(self.dropout_pooled(x)))
        # The embedding is taken before the second dropout, so it is deterministic given the input.
        logits = self.fc_logits(self.dropout_embedding(embedding))
        return logits, embedding


def init_weights(module: nn.Module) -> None:
    """PANNs initialisation, in place: conv/linear Xavier-uniform with zero bias, BN weight 1 bias 0,
    and the last BN of every residual block zero (each block starts as the identity, which
    stabilises early training of deep residual nets; Goyal et al. 2017)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, BasicBlock):
            nn.init.zeros_(m.bn2.weight)


def _plain(value: Any) -> Any:
    """A config value as plain JSON types (tuples become lists), so configs survive JSON and
    ``torch.load(weights_only=True)``."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"model option {value!r} of type {type(value).__name__} is not a plain JSON value")


# --------------------------------------------------------------------------------------------
# The common base and the five backbones
# --------------------------------------------------------------------------------------------
class AudioClassifier(nn.Module):
    """Base of every model: ``bn0`` over mel bins, a backbone, :class:`ClassifierHead`.

    Subclasses build ``self.backbone`` (``(batch, 1, time, mel)`` -> ``(batch, C, time', mel')``)
    and call :meth:`_finish`. Attributes: ``n_classes``, ``n_mels``, ``embedding_dim`` and
    ``config`` (registry name, ``n_classes``, ``n_mels`` and all constructor options, plain JSON
    types; :func:`model_from_config` rebuilds the model from it).
    """

    #: Registry name (key of :data:`MODELS`).
    name: ClassVar[str] = ""

    def __init__(self, n_classes: int, n_mels: int, options: dict[str, Any]) -> None:
        super().__init__()
        if n_classes < 1 or n_mels < 1:
            raise ValueError(f"{type(self).__name__}: n_classes and n_mels must be >= 1, got {n_classes}, {n_mels}")
        self.n_classes = int(n_classes)
        self.n_mels = int(n_mels)
        self.config: dict[str, Any] = {"name": self.name, "n_classes": self.n_classes, "n_mels": self.n_mels,
                                       **_plain(options)}
        # BatchNorm with one channel per mel bin: standardises each bin over batch and time, in
        # place of a per-clip normalisation of the dB values (FACTS section 2).
        self.bn0 = nn.BatchNorm2d(n_mels)

    def _finish(self, backbone: nn.Module, embedding_dim: int) -> None:
        """Attach the backbone (output ``embedding_dim`` channels) and the head, then initialise."""
        self.backbone = backbone
        self.embedding_dim = int(embedding_dim)
        self.head = ClassifierHead(embedding_dim, embedding_dim, self.n_classes)
        init_weights(self)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, time, mel)`` in dB -> standardised ``(batch, 1, time, mel)`` (after ``bn0``)."""
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise ValueError(f"{type(self).__name__} expects (batch, time, {self.n_mels}) log-mels, got {tuple(x.shape)}")
        # bn0 normalises channels, so mel bins are moved to the channel axis and back (as PANNs).
        z = self.bn0(x.transpose(1, 2).unsqueeze(-1))  # (batch, mel, time, 1)
        return z.squeeze(-1).transpose(1, 2).unsqueeze(1)

    def forward_normalized(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, 1, time, mel)`` from :meth:`normalize` -> logits ``(batch, n_classes)``,
        embedding ``(batch, embedding_dim)``."""
        return self.head(self.backbone(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel ``(batch, time, mel)`` in dB -> logits ``(batch, n_classes)``, embedding ``(batch, embedding_dim)``."""
        return self.forward_normalized(self.normalize(x))


class PlainCNN(AudioClassifier):
    """PANNs CNN: blocks of ``convs_per_block`` x (conv-BN-ReLU), each followed by 2x2 average
    pooling and dropout. CNN6 and CNN10 are two settings of it."""

    def __init__(self, n_classes: int, n_mels: int = N_MELS, *, kernel_size: int, convs_per_block: int,
                 channels: Sequence[int] = (64, 128, 256, 512), block_dropout: float = 0.2) -> None:
        super().__init__(n_classes, n_mels, dict(kernel_size=kernel_size, convs_per_block=convs_per_block,
                                                 channels=list(channels), block_dropout=block_dropout))
        layers: list[nn.Module] = []
        in_channels = 1
        for out_channels in channels:
            layers += [conv_bn_relu(in_channels, out_channels, kernel_size, convs_per_block),
                       AvgPool2x2(), nn.Dropout(block_dropout)]
            in_channels = out_channels
        self._finish(nn.Sequential(*layers), in_channels)


class CNN6(PlainCNN):
    """PANNs Cnn6: 4 blocks of one 5x5 conv, 64/128/256/512 channels; 4,569,669 parameters (5 classes)."""

    name = "cnn6"

    def __init__(self, n_classes: int, n_mels: int = N_MELS, *, kernel_size: int = 5, convs_per_block: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(n_classes, n_mels, kernel_size=kernel_size, convs_per_block=convs_per_block, **kwargs)


class CNN10(PlainCNN):
    """PANNs Cnn10: 4 blocks of two 3x3 convs, 64/128/256/512 channels; 4,951,493 parameters,
    about 1.9 GMAC per 150 x 64 clip."""

    name = "cnn10"

    def __init__(self, n_classes: int, n_mels: int = N_MELS, *, kernel_size: int = 3, convs_per_block: int = 2,
                 **kwargs: Any) -> None:
        super().__init__(n_classes, n_mels, kernel_size=kernel_size, convs_per_block=convs_per_block, **kwargs)


#: MobileNetV1 (PANNs variant): output channels and stride of the stem and the 13 depthwise-separable blocks.
MOBILENET_V1_LAYERS: tuple[tuple[int, int], ...] = (
    (32, 2),
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)


class MobileNetV1(AudioClassifier):
    """PANNs MobileNetV1: a 3x3 conv stem and 13 depthwise-separable blocks, 32 ... 1024 channels.

    Each block: depthwise 3x3 conv, average pooling (the stride), BN, ReLU, pointwise 1x1 conv, BN,
    ReLU. Downsampling by pooling instead of strided convs follows PANNs. PANNs has no dropout
    inside this backbone, hence ``block_dropout=0.0`` (dropout after every block if set).
    4,261,253 parameters (5 classes).
    """

    name = "mobilenetv1"

    def __init__(self, n_classes: int, n_mels: int = N_MELS, *, block_dropout: float = 0.0) -> None:
        super().__init__(n_classes, n_mels, dict(block_dropout=block_dropout))

        def pool(stride: int) -> nn.Module:
            return AvgPool2x2() if stride == 2 else nn.Identity()

        (stem_channels, stem_stride), *blocks = MOBILENET_V1_LAYERS
        layers: list[nn.Module] = [_conv(1, stem_channels, 3), pool(stem_stride), nn.BatchNorm2d(stem_channels),
                                   nn.ReLU(inplace=True), nn.Dropout(block_dropout)]
        in_channels = stem_channels
        for out_channels, stride in blocks:
            layers += [
                _conv(in_channels, in_channels, 3, groups=in_channels), pool(stride), nn.BatchNorm2d(in_channels),
                nn.ReLU(inplace=True),
                _conv(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
                nn.Dropout(block_dropout),
            ]
            in_channels = out_channels
        self._finish(nn.Sequential(*layers), in_channels)


class ResNet22(AudioClassifier):
    """PANNs ResNet22: conv block (two 3x3 convs, 64 ch) + pooling, BasicBlock stages [2, 2, 2, 2] at
    64/128/256/512 channels (stride by average pooling), pooling, conv block (two 3x3 convs, 2048 ch).

    Dropout ``block_dropout`` (0.2) after the first conv block, after the residual stages and after
    the last conv block; ``residual_dropout`` (0.1) inside each BasicBlock, as PANNs.
    62,605,509 parameters (5 classes).
    """

    name = "resnet22"

    def __init__(self, n_classes: int, n_mels: int = N_MELS, *, block_dropout: float = 0.2,
                 residual_dropout: float = 0.1) -> None:
        super().__init__(n_classes, n_mels, dict(block_dropout=block_dropout, residual_dropout=residual_dropout))
        stages: list[nn.Module] = []
        in_channels = 64
        for i, (out_channels, n_blocks) in enumerate(zip((64, 128, 256, 512), (2, 2, 2, 2))):
            stages.append(residual_stage(in_channels, out_channels, n_blocks, stride=1 if i == 0 else 2,
                                         dropout=residual_dropout, pool_stride=True))
            in_channels = out_channels
        backbone = nn.Sequential(
            conv_bn_relu(1, 64, 3, n_convs=2), AvgPool2x2(), nn.Dropout(block_dropout),
            *stages, AvgPool2x2(), nn.Dropout(block_dropout),
            conv_bn_relu(512, 2048, 3, n_convs=2), nn.Dropout(block_dropout),
        )
        self._finish(backbone, 2048)


class WideResNet(AudioClassifier):
    """Wide ResNet (Zagoruyko & Komodakis 2016) with the PANNs head; registered as WRN-28-2.

    depth 28 -> (28 - 4) / 6 = 4 BasicBlocks per stage; widen factor 2 of base widths 16/32/64
    -> stages of 32/64/128 channels, strides 1/2/2 (strided convs, as the WRN code). The head's
    embedding is 128-d.

    Which variant: the paper reports "about 1.5 M" and FACTS fixes 1,487,973 parameters (5 classes,
    64 mels). That count is met exactly by the post-activation (torchvision-style) form: a 3x3
    stem conv to 32 channels + BN (``stem_channels=32``, as wide as stage 1, so stage 1 needs no
    projection shortcut), BasicBlocks conv-BN-ReLU-conv-BN, and projection shortcuts 1x1 conv +
    BN in stages 2 and 3. It shares :class:`BasicBlock` with ResNet22. For comparison, the
    pre-activation WRN code (BN-ReLU-conv, BN-free shortcuts, final BN) with the same head gives
    1,483,317 with its 16-channel stem and 1,487,589 with a 32-channel stem; neither matches.

    Dropout: none inside blocks (the WRN code's default,
    ``residual_dropout=0``), ``block_dropout`` 0.2 after the stem and after each stage, matching
    the "dropout 0.2 after each conv block" of the other models (FACTS section 3).
    """

    name = "wrn28_2"

    def __init__(self, n_classes: int, n_mels: int = N_MELS, *, depth: int = 28, widen_factor: int = 2,
                 stem_channels: int = 32, block_dropout: float = 0.2, residual_dropout: float = 0.0) -> None:
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 (e.g. 16, 22, 28, 40), got {depth}")
        super().__init__(n_classes, n_mels, dict(depth=depth, widen_factor=widen_factor, stem_channels=stem_channels,
                                                 block_dropout=block_dropout, residual_dropout=residual_dropout))
        n_blocks = (depth - 4) // 6
        layers: list[nn.Module] = [conv_bn_relu(1, stem_channels, 3), nn.Dropout(block_dropout)]
        in_channels = stem_channels
        for i, base in enumerate((16, 32, 64)):
            out_channels = base * widen_factor
            layers += [residual_stage(in_channels, out_channels, n_blocks, stride=1 if i == 0 else 2,
                                      dropout=residual_dropout, pool_stride=False),
                       nn.Dropout(block_dropout)]
            in_channels = out_channels
        self._finish(nn.Sequential(*layers), in_channels)


#: The registry: model name -> class. Create models with :func:`create_model`.
MODELS: dict[str, type[AudioClassifier]] = {
    cls.name: cls for cls in (CNN6, CNN10, MobileNetV1, ResNet22, WideResNet)
}


def create_model(name: str, n_classes: int, n_mels: int = N_MELS, **kwargs: Any) -> AudioClassifier:
    """A freshly initialised model by registry name (``"cnn6"``, ``"cnn10"``, ``"mobilenetv1"``,
    ``"resnet22"``, ``"wrn28_2"``); ``kwargs`` are the class's options (e.g. ``block_dropout``).
    Input ``(batch, time, n_mels)`` log-mels in dB."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    return MODELS[name](n_classes, n_mels, **kwargs)


# --------------------------------------------------------------------------------------------
# Fusion of two trained models
# --------------------------------------------------------------------------------------------
class FusionModel(nn.Module):
    """Two models side by side; their embeddings, concatenated, feed ONE linear classifier (paper
    section 5, "ResNet22-CNN10": embeddings 2048 + 512 -> FC to classes).

    Dropout 0.5 precedes the classifier, as before the last FC of each single model's head.

    ``freeze=True``: the branches' parameters get ``requires_grad=False`` and the branches stay in
    eval mode (BN running statistics fixed, dropout off) even after ``.train()`` on this model; only
    the classifier learns. ``freeze=False``: everything is fine-tuned.

    Normalisation: each branch has its own ``bn0``. :meth:`normalize` therefore returns one channel
    per branch, ``(batch, 2, time, mel)``: channel 0 is ``branch_a.normalize(x)``, channel 1
    ``branch_b.normalize(x)``, and :meth:`forward_normalized` hands each channel to its branch.
    SpecAugment and MixUp then act after the first BN exactly as for a single model, provided they
    treat dim 1 as channels (the same stripes masked and the same pairs mixed in both channels),
    rather than on raw dB values, where a zero mask (0 dB) would be a loud artefact. Both branches
    must read the same features (same ``n_mels``, same sample rate, e.g. CNN10-8k + ResNet22-8k).

    ``config`` holds ``name="fusion"``, ``n_classes``, ``freeze`` and both branch configs, so
    :func:`model_from_config` rebuilds the architecture and the state_dict restores all weights.
    """

    name: ClassVar[str] = "fusion"

    def __init__(self, branch_a: nn.Module, branch_b: nn.Module, n_classes: int, freeze: bool = True,
                 dropout: float = HEAD_DROPOUT) -> None:
        super().__init__()
        if branch_a.n_mels != branch_b.n_mels:
            raise ValueError(f"fusion branches read different features: n_mels {branch_a.n_mels} vs {branch_b.n_mels}")
        self.branch_a = branch_a
        self.branch_b = branch_b
        self.n_classes = int(n_classes)
        self.n_mels = branch_a.n_mels
        self.freeze = bool(freeze)
        self.embedding_dim = branch_a.embedding_dim + branch_b.embedding_dim
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.embedding_dim, self.n_classes)
        init_weights(self.classifier)
        self.config: dict[str, Any] = {"name": self.name, "n_classes": self.n_classes, "freeze": self.freeze,
                                       "dropout": dropout, "branch_a": dict(branch_a.config),
                                       "branch_b": dict(branch_b.config)}
        if self.freeze:
            for branch in (self.branch_a, self.branch_b):
                branch.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "FusionModel":
        """Set train/eval mode; frozen branches stay in eval mode whatever ``mode`` is."""
        super().train(mode)
        if self.freeze:
            self.branch_a.eval()
            self.branch_b.eval()
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, time, mel)`` in dB -> ``(batch, 2, time, mel)``: each branch's ``bn0`` output."""
        return torch.cat([self.branch_a.normalize(x), self.branch_b.normalize(x)], dim=1)

    def forward_normalized(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, 2, time, mel)`` from :meth:`normalize` -> logits ``(batch, n_classes)``,
        concatenated embeddings ``(batch, embedding_dim_a + embedding_dim_b)``."""
        _, embedding_a = self.branch_a.forward_normalized(z[:, 0:1])
        _, embedding_b = self.branch_b.forward_normalized(z[:, 1:2])
        embedding = torch.cat([embedding_a, embedding_b], dim=1)
        return self.classifier(self.dropout(embedding)), embedding

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel ``(batch, time, mel)`` in dB -> logits ``(batch, n_classes)``, embedding ``(batch, embedding_dim)``."""
        return self.forward_normalized(self.normalize(x))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "FusionModel":
        """Architecture from a fusion ``config`` (weights freshly initialised; load a state_dict after)."""
        return cls(model_from_config(config["branch_a"]), model_from_config(config["branch_b"]),
                   config["n_classes"], freeze=config.get("freeze", True),
                   dropout=config.get("dropout", HEAD_DROPOUT))

    @classmethod
    def from_checkpoints(cls, path_a: str | Path, path_b: str | Path, n_classes: int,
                         freeze: bool = True) -> "FusionModel":
        """Fusion of two trained models loaded with :func:`load_model` (paper: branches initialised
        from the best single models); the classifier is new."""
        return cls(load_model(path_a), load_model(path_b), n_classes, freeze=freeze)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def model_from_config(config: dict[str, Any]) -> nn.Module:
    """A model with the architecture described by ``config`` (a model's ``config`` attribute),
    freshly initialised. Single models go through :data:`MODELS`; ``name="fusion"`` through
    :meth:`FusionModel.from_config`."""
    if "name" not in config:
        raise ValueError(f"model config has no 'name' key: {config!r}")
    if config["name"] == FusionModel.name:
        return FusionModel.from_config(config)
    options = {k: v for k, v in config.items() if k not in ("name", "n_classes", "n_mels")}
    return create_model(config["name"], config["n_classes"], config.get("n_mels", N_MELS), **options)


def model_from_checkpoint(checkpoint: dict[str, Any]) -> nn.Module:
    """The model a loaded checkpoint dict describes (``model_config``) with its weights
    (``state_dict``), on the CPU, in the mode a fresh model has (train); callers choose device and mode."""
    model = model_from_config(checkpoint["model_config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model


def checkpoint_dict(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """A checkpoint as a plain dict: ``model_config``, ``state_dict`` and any ``extra`` entries
    (iteration, metrics, ...). Save it with ``torch.save``; read it back with :func:`load_model`."""
    return {"model_config": model.config, "state_dict": model.state_dict(), **extra}


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a checkpoint file written with ``torch.save(checkpoint_dict(model), path)``.

    Loads with ``weights_only=True`` (no arbitrary code from the file). Returns the model in eval
    mode, its tensors on ``map_location``.
    """
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: checkpoint file not found") from exc
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in CHECKPOINT_KEYS):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path}: not a model checkpoint; expected a dict with keys {list(CHECKPOINT_KEYS)}, "
                         f"found {found}. Save checkpoints with torch.save(helpers.models.networks.checkpoint_dict(model), path).")
    # load_state_dict copies into the freshly built (CPU) model: move it where the caller asked.
    return model_from_checkpoint(checkpoint).to(map_location).eval()


# --------------------------------------------------------------------------------------------
# Size and cost
# --------------------------------------------------------------------------------------------
def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (only those with ``requires_grad`` unless ``trainable_only=False``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def forward_flops(model: nn.Module, time_frames: int, n_mels: int = N_MELS) -> float:
    """FLOPs (2 x multiply-accumulates) of the conv and linear layers for ONE clip of
    ``time_frames`` x ``n_mels`` log-mel frames, measured with forward hooks on a dummy input.

    BatchNorm, activations and pooling are left out (a few % at most). Example: CNN10 on a
    150 x 64 clip (16 kHz) -> about 3.85e9 FLOPs (1.92 GMAC).
    """
    macs = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:  # nn.Linear
            macs += output.numel() * module.in_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    modes = {m: m.training for m in model.modules()}
    parameter = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, time_frames, n_mels, device=parameter.device, dtype=parameter.dtype))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return 2.0 * macs
