"""The fire/smoke detector network: ShuffleNetV2 backbone, small FPN, FCOS-style heads.

The backbone is the ShuffleNetV2 0.5× of Megvii's ShuffleNet-Series, in the parameter layout
of ``../shared/models/shufflenetv2_x1_imagenet.pth`` (FastestDet's ImageNet-pretrained copy:
``first_conv``, ``stage2``–``stage4`` of ``branch_main``/``branch_proj`` blocks, 24→48→96→192
channels, no final 1×1 conv), so that file loads with ``strict=True``. Despite its name the file
holds the 0.5× width (48/96/192 stage channels), not torchvision's 1.0× (116/232/464).

Head: lateral 1×1 convs to :data:`NECK` channels, top-down nearest upsampling (a light FPN) at
strides 8/16/32, and per level (not shared: BatchNorm statistics differ per level) two
depthwise-separable convs and one 1×1 conv to ``C`` class logits, one centre-ness logit and four
side distances. ``forward`` returns what the ONNX file outputs:

* ``scores`` ``[N, A, C]``: ``sqrt(sigmoid(class) · sigmoid(centre-ness))``;
* ``ltrb`` ``[N, A, 4]``: distances from each cell centre to the box sides, input pixels.

``A`` runs over the cells of stride 8, then 16, then 32, row-major within a level; cell centres
are ``(x + 0.5) · stride``. Decoding and NMS are numpy code in
:mod:`inference.detectors.fire_smoke_net` so they need no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

#: Strides of the three output levels.
STRIDES: tuple[int, ...] = (8, 16, 32)
#: Channels of the neck and heads.
NECK = 64
#: Stage output channels of the 0.5× ShuffleNetV2 (stride 8, 16, 32).
STAGE_CHANNELS: tuple[int, ...] = (48, 96, 192)
STAGE_REPEATS: tuple[int, ...] = (4, 8, 4)
#: Largest exponent of the side-distance output (exp(8) · 32 px is far beyond any input).
MAX_LOG_DIST = 8.0


class ShuffleV2Block(nn.Module):
    """Megvii's ShuffleNetV2 block (their module and parameter names).

    Stride 1: half the channels pass through, the other half run ``branch_main``; stride 2:
    the whole input runs both ``branch_proj`` and ``branch_main`` and the results are joined.
    """

    def __init__(self, inp: int, oup: int, mid: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        out_main = oup - inp
        self.branch_main = nn.Sequential(
            nn.Conv2d(inp, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.Conv2d(mid, out_main, 1, bias=False),
            nn.BatchNorm2d(out_main),
            nn.ReLU(inplace=True),
        )
        self.branch_proj: nn.Sequential | None = None
        if stride == 2:
            self.branch_proj = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, inp, 1, bias=False),
                nn.BatchNorm2d(inp),
                nn.ReLU(inplace=True),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One block."""
        if self.branch_proj is not None:
            return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)
        proj, main = _channel_split_shuffle(x)
        return torch.cat((proj, self.branch_main(main)), 1)


def _channel_split_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Megvii's shuffle: even channels pass through, odd channels go to the main branch."""
    n, c, h, w = x.shape
    x = x.reshape(n, c // 2, 2, h, w)
    return x[:, :, 0], x[:, :, 1]


class ShuffleNetV2Backbone(nn.Module):
    """ShuffleNetV2 0.5× up to stage 4; returns the stride 8, 16 and 32 feature maps."""

    def __init__(self) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(
            nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True)
        )
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inp = 24
        for name, oup, repeats in zip(
            ("stage2", "stage3", "stage4"), STAGE_CHANNELS, STAGE_REPEATS, strict=True
        ):
            blocks = [ShuffleV2Block(inp, oup, oup // 2, 2)]
            blocks += [ShuffleV2Block(oup // 2, oup, oup // 2, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*blocks))
            inp = oup

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features at strides 8, 16, 32."""
        x = self.maxpool(self.first_conv(x))
        c3 = self.stage2(x)
        c4 = self.stage3(c3)
        c5 = self.stage4(c4)
        return c3, c4, c5


def _dw_sep(ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(ch, ch, 3, 1, 1, groups=ch, bias=False),
        nn.BatchNorm2d(ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(ch, ch, 1, bias=False),
        nn.BatchNorm2d(ch),
        nn.ReLU(inplace=True),
    )


class FireSmokeDet(nn.Module):
    """Backbone + FPN + per-level anchor-free heads (see the module docstring).

    Args:
        num_classes: Object classes (fire, smoke).
        input_scale: The backbone's input is ``pixels · input_scale`` of a BGR ``0..255``
            image. The pretrained file's first BatchNorm statistics match BGR ``0..1`` input
            (checked on training images: RGB and ImageNet mean/std fit worse), hence 1/255.
            The ONNX input is BGR 0..255 float, so callers need no normalisation.
    """

    def __init__(self, num_classes: int = 2, input_scale: float = 1 / 255) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_scale = input_scale
        self.backbone = ShuffleNetV2Backbone()
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, NECK, 1, bias=False), nn.BatchNorm2d(NECK))
            for c in STAGE_CHANNELS
        )
        self.towers = nn.ModuleList(nn.Sequential(_dw_sep(NECK), _dw_sep(NECK)) for _ in STRIDES)
        self.preds = nn.ModuleList(nn.Conv2d(NECK, num_classes + 5, 1) for _ in STRIDES)
        for p in self.preds:
            assert p.bias is not None  # Conv2d has a bias by default
            nn.init.normal_(p.weight, std=0.01)
            nn.init.zeros_(p.bias)
            # Rare positives: start every class near a 1 % score (focal-loss prior).
            nn.init.constant_(p.bias[:num_classes], -4.6)

    def load_backbone(self, path: Path | str) -> None:
        """Load the ImageNet-pretrained ShuffleNetV2 state dict (``strict=True``)."""
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        self.backbone.load_state_dict(state, strict=True)

    def raw(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per level ``[N, C + 5, H_l, W_l]``: class logits, centre-ness logit, log-distances."""
        c3, c4, c5 = self.backbone(x * self.input_scale)
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + F.interpolate(p5, size=c4.shape[-2:], mode="nearest")
        p3 = self.lateral[0](c3) + F.interpolate(p4, size=c3.shape[-2:], mode="nearest")
        return [
            pred(tower(p))
            for p, tower, pred in zip((p3, p4, p5), self.towers, self.preds, strict=True)
        ]

    def split(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flatten levels: class logits ``[N, A, C]``, centre-ness logits ``[N, A]``, ltrb px
        ``[N, A, 4]``."""
        c = self.num_classes
        logits, ctr, dist = [], [], []
        for r, stride in zip(raw, STRIDES, strict=True):
            flat = r.flatten(2).transpose(1, 2)  # [N, HW, C + 5]
            logits.append(flat[..., :c])
            ctr.append(flat[..., c])
            dist.append(torch.exp(flat[..., c + 1 :].clamp(max=MAX_LOG_DIST)) * stride)
        return torch.cat(logits, 1), torch.cat(ctr, 1), torch.cat(dist, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``scores`` ``[N, A, C]`` and ``ltrb`` ``[N, A, 4]`` of BGR 0..255 input."""
        logits, ctr, dist = self.split(self.raw(x))
        scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(ctr)[..., None])
        return scores, dist


def cell_centres(h: int, w: int, device: Any = None) -> torch.Tensor:
    """Cell centres ``[A, 2]`` (x, y input pixels) of an ``h × w`` input, all levels."""
    out = []
    for s in STRIDES:
        gh, gw = -(-h // s), -(-w // s)
        ys, xs = torch.meshgrid(
            torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij"
        )
        out.append((torch.stack([xs.flatten(), ys.flatten()], 1).float() + 0.5) * s)
    return torch.cat(out)


def level_of_cells(h: int, w: int) -> torch.Tensor:
    """Level index ``[A]`` of each cell."""
    return torch.cat(
        [torch.full((-(-h // s) * -(-w // s),), i, dtype=torch.long) for i, s in enumerate(STRIDES)]
    )
