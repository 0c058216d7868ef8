"""NICE (Dinh et al., 2014): an exactly invertible map of W whose output splits into identity and attribute codes.

Additive coupling layers alternate which half of the vector they update (y_b = x_b + m(x_a), with m an MLP), and a
final learned diagonal scaling exp(s) ends the stack. The inverse subtracts the same MLP outputs in reverse order,
so `inverse(forward(w)) == w` up to float rounding. Mixing two faces is `inverse(id_code(A), attr_code(B))`.
"""
from __future__ import annotations

import torch

from core.checkpoints import Pretrained


class AdditiveCoupling(torch.nn.Module):
    """Update one half of the features (even or odd positions) by an MLP of the other half."""

    def __init__(self, dim: int, hidden: int, depth: int, parity: int) -> None:
        super().__init__()
        self.parity = parity
        self.register_buffer("updated", torch.arange(parity, dim, 2), persistent=False)
        self.register_buffer("kept", torch.arange(1 - parity, dim, 2), persistent=False)
        layers: list[torch.nn.Module] = []
        sizes = [len(self.kept)] + [hidden] * depth + [len(self.updated)]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(torch.nn.LeakyReLU(0.2))
        torch.nn.init.zeros_(layers[-1].weight)  # start as the identity map
        torch.nn.init.zeros_(layers[-1].bias)
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        shift = self.net(x[:, self.kept])
        y = x.clone()
        y[:, self.updated] = x[:, self.updated] - shift if reverse else x[:, self.updated] + shift
        return y


class NICE(torch.nn.Module, Pretrained):
    """w [B, dim] <-> (identity code [B, id_dim], attribute code [B, dim - id_dim])."""

    kind = "nice"
    config_limits = {"layers": 64, "depth": 32}

    def __init__(self, dim: int = 512, id_dim: int = 256, layers: int = 4, hidden: int = 512, depth: int = 3) -> None:
        super().__init__()
        if not 0 < id_dim < dim:
            raise ValueError(f"id_dim must be between 1 and dim - 1 ({dim - 1}), got {id_dim}")
        if layers < 2:
            raise ValueError("NICE needs at least two coupling layers (so that every feature is updated)")
        self.dim, self.id_dim = dim, id_dim
        self.couplings = torch.nn.ModuleList(AdditiveCoupling(dim, hidden, depth, i % 2) for i in range(layers))
        self.log_scale = torch.nn.Parameter(torch.zeros(dim))

    def _check(self, w: torch.Tensor) -> torch.Tensor:
        if w.ndim != 2 or w.shape[1] != self.dim:
            raise ValueError(f"NICE expects [batch, {self.dim}] latents, got {list(w.shape)}")
        return w

    def encode(self, w: torch.Tensor) -> torch.Tensor:
        """The full code [B, dim]: identity part first."""
        x = self._check(w)
        for layer in self.couplings:
            x = layer(x)
        return x * self.log_scale.exp()

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        x = self._check(code) * (-self.log_scale).exp()
        for layer in reversed(self.couplings):
            x = layer(x, reverse=True)
        return x

    def forward(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(identity code, attribute code) of w."""
        code = self.encode(w)
        return code[:, :self.id_dim], code[:, self.id_dim:]

    def inverse(self, id_code: torch.Tensor, attr_code: torch.Tensor) -> torch.Tensor:
        """The w whose codes are (id_code, attr_code)."""
        if id_code.shape[1] != self.id_dim or attr_code.shape[1] != self.dim - self.id_dim:
            raise ValueError(f"codes must be [batch, {self.id_dim}] and [batch, {self.dim - self.id_dim}], got "
                             f"{list(id_code.shape)} and {list(attr_code.shape)}")
        return self.decode(torch.cat([id_code, attr_code], dim=1))

    def mix(self, w_identity: torch.Tensor, w_attributes: torch.Tensor) -> torch.Tensor:
        """Identity of the first latent on the attributes of the second."""
        return self.inverse(self(w_identity)[0], self(w_attributes)[1])

    def interpolate(self, w_a: torch.Tensor, w_b: torch.Tensor, t: torch.Tensor, part: str) -> torch.Tensor:
        """Move only the identity ('identity') or only the attributes ('attributes') from a towards b; t in [0, 1]."""
        if part not in ("identity", "attributes"):
            raise ValueError("part must be 'identity' or 'attributes'")
        (ia, aa), (ib, ab) = self(w_a), self(w_b)
        t = t.reshape(-1, 1).to(w_a)
        if part == "identity":
            return self.inverse(ia.lerp(ib, t), aa.expand(len(t), -1))
        return self.inverse(ia.expand(len(t), -1), aa.lerp(ab, t))

