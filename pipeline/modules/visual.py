"""The visual side's input: V = W_u U (section 2.2), and a learned stand-in for absent images."""

from __future__ import annotations

import torch
from torch import nn

from umt.pipeline.modules.transformer import INIT_STD, init_weights


class VisualProjection(nn.Module):
    """Projects the (grid, visual_dim) ResNet blocks U of each post into the text width d.

    A post without a usable image (``image_mask`` False, or ``image`` None for the whole batch)
    gets a learned (grid, d) "no image" grid instead of its projected blocks. The alternative,
    masking every visual key, leaves the attention of eq. 1 with an empty key set (a softmax over
    nothing: NaN) and gives the P queries nothing to stand for. A learned grid keeps the
    computation the same for every post, can never be NaN, and lets the model learn what to do
    without an image (e.g. close the visual gate). The absent post's own feature slot is zeroed
    before the projection, so whatever a cache stores there (zeros, NaN) never reaches a value
    or a gradient.
    """

    def __init__(self, visual_dim: int, d: int, grid: int):
        super().__init__()
        self.visual_dim = visual_dim
        self.grid = grid
        self.proj = nn.Linear(visual_dim, d)  # W_u (with a bias, which the paper omits for clarity)
        self.no_image = nn.Parameter(torch.randn(grid, d) * INIT_STD)  # (grid, d)
        init_weights(self)

    def forward(self, image: torch.Tensor | None, image_mask: torch.Tensor, batch_size: int) -> torch.Tensor:
        """(B, grid, visual_dim) features or None, (B,) bool mask -> (B, grid, d) V."""
        if image is None:
            return self.no_image.expand(batch_size, -1, -1)  # (B, grid, d)
        if tuple(image.shape[1:]) != (self.grid, self.visual_dim):
            raise ValueError(
                f"image features of shape {tuple(image.shape[1:])}, the model expects "
                f"({self.grid}, {self.visual_dim}) per post"
            )
        present = image_mask[:, None, None]  # (B, 1, 1)
        image = image.to(self.no_image.dtype).masked_fill(~present, 0.0)  # (B, grid, visual_dim), the model's dtype
        return torch.where(present, self.proj(image), self.no_image)  # (B, grid, d)
