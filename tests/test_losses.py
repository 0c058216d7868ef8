"""Disentanglement losses: each is zero when its goal is met and grows when it is not; discriminators can learn."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.losses import (CodeDiscriminator, confusion_loss, contrastive_loss, discriminator_loss, identity_loss,
                         landmark_loss)


def test_identity_loss():
    e = F.normalize(torch.randn(8, 16), dim=1)
    assert identity_loss(e, e).item() == pytest.approx(0.0, abs=1e-6)
    assert identity_loss(-e, e).item() == pytest.approx(2.0, abs=1e-5)
    assert 0.5 < identity_loss(F.normalize(torch.randn(8, 16), dim=1), e).item() < 1.5


def test_landmark_loss_is_a_fraction_of_the_image():
    lm = torch.rand(4, 20, 2) * 64
    assert landmark_loss(lm, lm, 64).item() == 0
    assert landmark_loss(lm + 6.4, lm, 64).item() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="differ"):
        landmark_loss(lm[:, :5], lm, 64)


def test_contrastive_loss_groups_codes_like_the_analyzer_groups_faces():
    torch.manual_seed(0)
    people = F.normalize(torch.randn(4, 32), dim=1)
    labels = torch.arange(4).repeat_interleave(3)
    emb = people[labels] + 0.01 * torch.randn(12, 32)
    good = people[labels] * 5  # codes already grouped by person (and far apart)
    bad = torch.randn(12, 32)
    assert contrastive_loss(good, emb).item() < 1e-3 < contrastive_loss(bad, emb).item()
    codes = bad.clone().requires_grad_(True)
    opt = torch.optim.Adam([codes], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        contrastive_loss(codes, emb).backward()
        opt.step()
    z = F.normalize(codes.detach(), dim=1)
    same = (z[0] @ z[1]).item()
    other = (z[0] @ z[3]).item()
    assert same > 0.9 and other < same - 0.3


def test_code_discriminator_learns_and_confusion_rewards_uninformative_codes():
    torch.manual_seed(0)
    code = torch.randn(256, 8)
    target = torch.sigmoid(code[:, :3] * 2)  # readings that the code does predict
    disc = CodeDiscriminator(8, 3, hidden=64)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    start = discriminator_loss(disc(code), target).item()
    for _ in range(300):
        opt.zero_grad()
        discriminator_loss(disc(code), target).backward()
        opt.step()
    assert discriminator_loss(disc(code), target).item() < start / 5
    informative = confusion_loss(disc(code), target).item()
    blank = confusion_loss(disc(torch.zeros(256, 8)), target).item()
    assert blank < informative / 5
    unit = CodeDiscriminator(8, 16, unit_output=True)(code)
    assert torch.allclose(unit.norm(dim=1), torch.ones(256), atol=1e-5)
