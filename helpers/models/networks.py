"""The paper's five PANNs-style classifiers of log-mel spectrograms (fusion: :mod:`helpers.models.fusion`).

Every model maps a log-mel batch ``(batch, time, mel)`` in dB to ``(logits, embedding)``:

    logits     (batch, n_classes)      raw scores, no sigmoid/softmax inside
    embedding  (batch, embedding_dim)  penultimate FC output after ReLU (>= 0), used for SVMs,
                                       t-SNE and fusion

The forward pass is split in two, because training augments in between (docs/reference.md §4: the
authors apply SpecAugment and then MixUp to the log-mels *after* the first BatchNorm):

    z = model.normalize(x)               # (batch, time, mel) dB -> (batch, 1, time, mel)
    z = spec_augment(z); z = mixup(z)    # training only, in helpers.training.augment
    logits, embedding = model.forward_normalized(z)

``model(x)`` does both steps at once. Models are created by name through
:data:`helpers.models.registry.MODELS`::

    model = create_model("cnn10", n_classes=5)          # n_mels=64 by default

All models share :class:`AudioClassifier`: the BatchNorm over mel bins (``bn0``), the
classification head (:class:`ClassifierHead`), weight initialisation and the ``config`` dict
that a checkpoint stores to rebuild the model (:mod:`helpers.models.registry`,
:mod:`helpers.models.checkpoint`).
Only the convolutional backbone differs between models.

Architectures follow Kong et al. (2020, "PANNs") as used by the paper; trainable parameter counts
with 64 mel bins and 5 classes reproduce the paper (docs/reference.md §3), see :data:`PAPER_PARAMETER_COUNTS`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from helpers.features.frontend import N_MELS  # the front end's mel bins are the networks' input height

#: Dropout before each of the two FC layers of the head (PANNs).
HEAD_DROPOUT = 0.5
#: Trainable parameters with ``n_mels=64, n_classes=5`` (the paper's figures, docs/reference.md, "Models").
PAPER_PARAMETER_COUNTS = {
    "cnn6": 4_569_669,
    "cnn10": 4_951_493,
    "mobilenetv1": 4_261_253,
    "resnet22": 62_605_509,
    "wrn28_2": 1_487_973,
}


# Narrow networks (the demo profile): ``width`` multiplies every channel count of a backbone (the
# head's embedding follows the last block). 1.0 is the paper's network.
def scaled(channels: int, width: float) -> int:
    """``channels`` x ``width``, rounded, at least 1 (``width`` in (0, 1] for narrower networks)."""
    if not width > 0:
        raise ValueError(
            f"model option width must be > 0 (a channel multiplier; 1.0 is the paper's network), got {width!r}"
        )
    return max(1, int(round(channels * width)))


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
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=False
    )


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, n_convs: int = 1) -> nn.Sequential:
    """``n_convs`` x (conv k x k, 'same' padding - BatchNorm - ReLU); PANNs' ConvBlock without its pooling."""
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [
            _conv(in_channels if i == 0 else out_channels, out_channels, kernel_size),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Post-activation residual block: conv3x3-BN-ReLU-dropout-conv3x3-BN, plus shortcut, then ReLU.

    ``stride=2`` halves time and mel. ``pool_stride=True`` does it the PANNs ResNet way (2x2
    average pooling before the first conv and in the shortcut); ``False`` the WRN way (strided
    convolutions). The shortcut is a 1x1 conv + BN whenever the shape changes. ``bn2`` (the last
    BN) is zero-initialised by :func:`init_weights`, so each block starts as the identity.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0, pool_stride: bool = True
    ) -> None:
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


def residual_stage(
    in_channels: int, out_channels: int, n_blocks: int, stride: int, dropout: float, pool_stride: bool
) -> nn.Sequential:
    """``n_blocks`` BasicBlocks; only the first one changes channels and stride."""
    return nn.Sequential(
        *[
            BasicBlock(
                in_channels if i == 0 else out_channels,
                out_channels,
                stride if i == 0 else 1,
                dropout=dropout,
                pool_stride=pool_stride,
            )
            for i in range(n_blocks)
        ]
    )


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


def _width_option(width: float) -> dict[str, float]:
    """``{"width": w}`` for a narrowed network, ``{}`` for the paper's (so its stored config is unchanged)."""
    scaled(1, width)  # validates
    return {} if float(width) == 1.0 else {"width": float(width)}


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
    types; :func:`helpers.models.registry.model_from_config` rebuilds the model from it).
    """

    #: Registry name (key of :data:`helpers.models.registry.MODELS`).
    name: ClassVar[str] = ""

    def __init__(self, n_classes: int, n_mels: int, options: dict[str, Any]) -> None:
        super().__init__()
        if n_classes < 1 or n_mels < 1:
            raise ValueError(f"{type(self).__name__}: n_classes and n_mels must be >= 1, got {n_classes}, {n_mels}")
        self.n_classes = int(n_classes)
        self.n_mels = int(n_mels)
        self.config: dict[str, Any] = {
            "name": self.name,
            "n_classes": self.n_classes,
            "n_mels": self.n_mels,
            **_plain(options),
        }
        # BatchNorm with one channel per mel bin: standardises each bin over batch and time, in
        # place of a per-clip normalisation of the dB values (docs/reference.md §2).
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
            raise ValueError(
                f"{type(self).__name__} expects (batch, time, {self.n_mels}) log-mels, got {tuple(x.shape)}"
            )
        # bn0 normalises channels, so mel bins are moved to the channel axis and back (as PANNs).
        z = self.bn0(x.transpose(1, 2).unsqueeze(-1))  # (batch, mel, time, 1)
        return z.squeeze(-1).transpose(1, 2).unsqueeze(1)

    def forward_normalized(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, 1, time, mel)`` from :meth:`normalize` -> logits ``(batch, n_classes)``,
        embedding ``(batch, embedding_dim)``."""
        return self.head(self.backbone(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel ``(batch, time, mel)`` in dB -> logits ``(batch, n_classes)``, embedding
        ``(batch, embedding_dim)``."""
        return self.forward_normalized(self.normalize(x))


class PlainCNN(AudioClassifier):
    """PANNs CNN: blocks of ``convs_per_block`` x (conv-BN-ReLU), each followed by 2x2 average
    pooling and dropout. CNN6 and CNN10 are two settings of it."""

    def __init__(
        self,
        n_classes: int,
        n_mels: int = N_MELS,
        *,
        kernel_size: int,
        convs_per_block: int,
        channels: Sequence[int] = (64, 128, 256, 512),
        block_dropout: float = 0.2,
        width: float = 1.0,
    ) -> None:
        super().__init__(
            n_classes,
            n_mels,
            dict(
                kernel_size=kernel_size,
                convs_per_block=convs_per_block,
                channels=list(channels),
                block_dropout=block_dropout,
                **_width_option(width),
            ),
        )
        layers: list[nn.Module] = []
        in_channels = 1
        for out_channels in (scaled(c, width) for c in channels):
            layers += [
                conv_bn_relu(in_channels, out_channels, kernel_size, convs_per_block),
                AvgPool2x2(),
                nn.Dropout(block_dropout),
            ]
            in_channels = out_channels
        self._finish(nn.Sequential(*layers), in_channels)


class CNN6(PlainCNN):
    """PANNs Cnn6: 4 blocks of one 5x5 conv, 64/128/256/512 channels; 4,569,669 parameters (5 classes)."""

    name = "cnn6"

    def __init__(
        self, n_classes: int, n_mels: int = N_MELS, *, kernel_size: int = 5, convs_per_block: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(n_classes, n_mels, kernel_size=kernel_size, convs_per_block=convs_per_block, **kwargs)


class CNN10(PlainCNN):
    """PANNs Cnn10: 4 blocks of two 3x3 convs, 64/128/256/512 channels; 4,951,493 parameters,
    about 1.9 GMAC per 150 x 64 clip."""

    name = "cnn10"

    def __init__(
        self, n_classes: int, n_mels: int = N_MELS, *, kernel_size: int = 3, convs_per_block: int = 2, **kwargs: Any
    ) -> None:
        super().__init__(n_classes, n_mels, kernel_size=kernel_size, convs_per_block=convs_per_block, **kwargs)


#: MobileNetV1 (PANNs variant): output channels and stride of the stem and the 13 depthwise-separable blocks.
MOBILENET_V1_LAYERS: tuple[tuple[int, int], ...] = (
    (32, 2),
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class MobileNetV1(AudioClassifier):
    """PANNs MobileNetV1: a 3x3 conv stem and 13 depthwise-separable blocks, 32 ... 1024 channels.

    Each block: depthwise 3x3 conv, average pooling (the stride), BN, ReLU, pointwise 1x1 conv, BN,
    ReLU. Downsampling by pooling instead of strided convs follows PANNs. PANNs has no dropout
    inside this backbone, hence ``block_dropout=0.0`` (dropout after every block if set).
    4,261,253 parameters (5 classes).
    """

    name = "mobilenetv1"

    def __init__(self, n_classes: int, n_mels: int = N_MELS, *, block_dropout: float = 0.0, width: float = 1.0) -> None:
        super().__init__(n_classes, n_mels, dict(block_dropout=block_dropout, **_width_option(width)))

        def pool(stride: int) -> nn.Module:
            return AvgPool2x2() if stride == 2 else nn.Identity()

        (stem_channels, stem_stride), *blocks = [(scaled(c, width), st) for c, st in MOBILENET_V1_LAYERS]
        layers: list[nn.Module] = [
            _conv(1, stem_channels, 3),
            pool(stem_stride),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(block_dropout),
        ]
        in_channels = stem_channels
        for out_channels, stride in blocks:
            layers += [
                _conv(in_channels, in_channels, 3, groups=in_channels),
                pool(stride),
                nn.BatchNorm2d(in_channels),
                nn.ReLU(inplace=True),
                _conv(in_channels, out_channels, 1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
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

    def __init__(
        self,
        n_classes: int,
        n_mels: int = N_MELS,
        *,
        block_dropout: float = 0.2,
        residual_dropout: float = 0.1,
        width: float = 1.0,
    ) -> None:
        super().__init__(
            n_classes,
            n_mels,
            dict(block_dropout=block_dropout, residual_dropout=residual_dropout, **_width_option(width)),
        )
        stages: list[nn.Module] = []
        in_channels = stem = scaled(64, width)
        for i, (out_channels, n_blocks) in enumerate(
            zip([scaled(c, width) for c in (64, 128, 256, 512)], (2, 2, 2, 2))
        ):
            stages.append(
                residual_stage(
                    in_channels,
                    out_channels,
                    n_blocks,
                    stride=1 if i == 0 else 2,
                    dropout=residual_dropout,
                    pool_stride=True,
                )
            )
            in_channels = out_channels
        backbone = nn.Sequential(
            conv_bn_relu(1, stem, 3, n_convs=2),
            AvgPool2x2(),
            nn.Dropout(block_dropout),
            *stages,
            AvgPool2x2(),
            nn.Dropout(block_dropout),
            conv_bn_relu(in_channels, scaled(2048, width), 3, n_convs=2),
            nn.Dropout(block_dropout),
        )
        self._finish(backbone, scaled(2048, width))


class WideResNet(AudioClassifier):
    """Wide ResNet (Zagoruyko & Komodakis 2016) with the PANNs head; registered as WRN-28-2.

    depth 28 -> (28 - 4) / 6 = 4 BasicBlocks per stage; widen factor 2 of base widths 16/32/64
    -> stages of 32/64/128 channels, strides 1/2/2 (strided convs, as the WRN code). The head's
    embedding is 128-d.

    Which variant: the paper reports "about 1.5 M" and docs/reference.md §3 records 1,487,973 parameters (5 classes,
    64 mels). That count is met exactly by the post-activation (torchvision-style) form: a 3x3
    stem conv to 32 channels + BN (``stem_channels=32``, as wide as stage 1, so stage 1 needs no
    projection shortcut), BasicBlocks conv-BN-ReLU-conv-BN, and projection shortcuts 1x1 conv +
    BN in stages 2 and 3. It shares :class:`BasicBlock` with ResNet22. For comparison, the
    pre-activation WRN code (BN-ReLU-conv, BN-free shortcuts, final BN) with the same head gives
    1,483,317 with its 16-channel stem and 1,487,589 with a 32-channel stem; neither matches.

    Dropout: none inside blocks (the WRN code's default,
    ``residual_dropout=0``), ``block_dropout`` 0.2 after the stem and after each stage, matching
    the "dropout 0.2 after each conv block" of the other models (docs/reference.md §3).
    """

    name = "wrn28_2"

    def __init__(
        self,
        n_classes: int,
        n_mels: int = N_MELS,
        *,
        depth: int = 28,
        widen_factor: int = 2,
        stem_channels: int = 32,
        block_dropout: float = 0.2,
        residual_dropout: float = 0.0,
        width: float = 1.0,
    ) -> None:
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 (e.g. 16, 22, 28, 40), got {depth}")
        super().__init__(
            n_classes,
            n_mels,
            dict(
                depth=depth,
                widen_factor=widen_factor,
                stem_channels=stem_channels,
                block_dropout=block_dropout,
                residual_dropout=residual_dropout,
                **_width_option(width),
            ),
        )
        n_blocks = (depth - 4) // 6
        stem = scaled(stem_channels, width)
        layers: list[nn.Module] = [conv_bn_relu(1, stem, 3), nn.Dropout(block_dropout)]
        in_channels = stem
        for i, base in enumerate((16, 32, 64)):
            out_channels = scaled(base * widen_factor, width)
            layers += [
                residual_stage(
                    in_channels,
                    out_channels,
                    n_blocks,
                    stride=1 if i == 0 else 2,
                    dropout=residual_dropout,
                    pool_stride=False,
                ),
                nn.Dropout(block_dropout),
            ]
            in_channels = out_channels
        self._finish(nn.Sequential(*layers), in_channels)
