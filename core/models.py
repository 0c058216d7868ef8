"""The one model-set loader: a set (embedded, ffhq, hf:owner/name@rev) resolved once into the roles a page needs.

Roles: generator, directions, nice, encoder, analyzer, vae, ae, feature_vae, feature_ae, guided_vae. A page declares
the roles it cannot work without and those it uses when the set has them:

    ROLES, OPTIONAL = ("generator", "nice"), ("analyzer",)
    models = load_models("embedded", ROLES, OPTIONAL, device="cpu")
    G, nice, analyzer = models["generator"], models["nice"], models.get("analyzer")

The set's manifest is read once; each role is loaded frozen and shared between pages (`hub.load_frozen`), the
directions role through `core.directions`. A set without a required role raises `MissingRole`, whose message names
the role and the command that builds it; an optional role that is absent or cannot load is left out, with the
reason in `models.notes[role]`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from core import hub
from core.checkpoints import CheckpointError

# What builds each role for a generator (the embedded set's recipes; --set points them at another generator).
BUILDS = {
    "generator": "python -m core.train distill --config configs/distill_synthfaces64.yaml --ship, or convert "
                 "official weights with python -m core.stylegan3.convert NETWORK.pkl checkpoints/",
    "directions": "python -m core.directions --generator <generator>",
    "nice": "train-disentanglement --config configs/nice_synthfaces.yaml --ship --set generator=<generator>",
    "analyzer": "python -m core.train analyzer --config configs/analyzer_synthfaces64.yaml --ship",
    "vae": "python -m core.train vae --config configs/vae_synthfaces45.yaml --ship",
    "ae": "python -m core.train vae --config configs/ae_synthfaces45.yaml --ship",
    "feature_vae": "python -m core.train vae --config configs/vae_feature_synthfaces45.yaml --ship",
    "feature_ae": "python -m core.train vae --config configs/ae_feature_synthfaces45.yaml --ship",
    "guided_vae": "python -m core.train vae --config configs/vae_guided_synthfaces45.yaml --ship",
    "encoder": "python -m core.train encoder --config configs/encoder_synthfaces64.yaml --ship --set "
               "generator=<generator>",
}
ROLE_ERRORS = (hub.HubError, CheckpointError, OSError)  # what "this role cannot be loaded" looks like


class MissingRole(hub.HubError):
    """A model set lacks a role that a page or a report needs; the message names it and what builds it."""

    def __init__(self, set_name: str, role: str, has: Sequence[str]) -> None:
        self.role = role
        super().__init__(f"model set {set_name!r} has no {role!r} model (it has: {', '.join(has) or 'nothing'}); "
                         f"build one with: {BUILDS.get(role, 'its training command')}")


@dataclass
class Models:
    """The roles of one model set that were asked for and loaded, and why the optional ones that are not here
    are missing."""

    name: str
    roles: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, role: str) -> Any:
        return self.roles[role]

    def __contains__(self, role: str) -> bool:
        return role in self.roles

    def get(self, role: str, default: Any = None) -> Any:
        return self.roles.get(role, default)


def _load_role(model_set: hub.ModelSet, role: str, device: str) -> Any:
    ckpt = model_set.models[role]
    if ckpt.kind == "directions":
        from core.directions import load_directions
        return load_directions(hub.resolve(ckpt))
    return hub.load_frozen(ckpt, device)


def load_models(models: str, required: Sequence[str] = (), optional: Sequence[str] = (),
                device: str = "cpu") -> Models:
    """The `required` and `optional` roles of model set `models`, the set resolved once. A required role that the
    set lacks raises MissingRole; one that cannot load raises its error with the role named."""
    model_set = hub.model_set(models)
    out = Models(models)
    for role in required:  # every required role is checked before any is loaded
        if role not in model_set.models:
            raise MissingRole(models, role, list(model_set.models))
    for role in required:
        try:
            out.roles[role] = _load_role(model_set, role, device)
        except ROLE_ERRORS as e:
            raise type(e)(f"the {role!r} of model set {models!r}: {e}") from e
    for role in optional:
        if role not in model_set.models:
            out.notes[role] = str(MissingRole(models, role, list(model_set.models)))
            continue
        try:
            out.roles[role] = _load_role(model_set, role, device)
        except ROLE_ERRORS as e:
            out.notes[role] = f"the {role!r} of model set {models!r} cannot be loaded: {e}"
    return out
