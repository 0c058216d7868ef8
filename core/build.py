"""One command builds a complete model set for any StyleGAN3 generator, stage by stage, and can publish it.

    python -m core.build --generator <checkpoint | ffhq | hf:owner/name@rev> --labeller <synthfaces | dlib |
        insightface[:ROOT]> --out sets/<name> [--samples N] [--nice-steps S] [--encoder-steps S] [--publish owner/name]

Stages, each a run folder under `<out>/stages/` (the training monitor shows them: `--runs <out>/stages`), each
skipped when its result is already in `<out>`, so an interrupted build goes on where it stopped:
1. `pca`: the W average and PCA directions (GANSpace) from the mapping network;
2. `labels`: N generated faces read by the labeller (for the distilled generator with the SynthFaces labeller,
   the exact factors of z); faces it cannot find are counted and left out, and the stage fails when most are;
3. `directions`: supervised directions (InterFaceGAN: the normal of a linear fit per label, with its R^2) beside
   the PCA ones;
4. `nice`: NICE trained on the generator's W with the labeller's differentiable identity (the SynthFaces analyzer,
   or insightface's ArcFace through onnx2torch) and its attribute readings;
5. `encoder`: the encoder image -> W, trained on the generator's own (face, w) pairs;
6. `reports`: the report card's rows (z, W, NICE) against the exact factors where the generator is the distilled
   one, and VP (interactive) on W and NICE;
then one manifest (`latent_lab.json`) naming every role, which `python app.py --models <out>` serves, and with
`--publish` one Hub model repository. Every training stage runs through Accelerate (CPU, a GPU or several).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from tqdm import tqdm

from core.checkpoints import CheckpointError, save_checkpoint
from core.files import atomic_write_text
from core.hub import MANIFEST, HubError

BUILD_FILE = "build.json"
MOST_MISSING = 0.5  # the labels stage fails when the labeller finds fewer faces than this share
STAGES = ("pca", "labels", "directions", "nice", "encoder", "reports")


@dataclass
class BuildOptions:
    samples: int = 3000
    nice_steps: int = 2000
    encoder_steps: int = 3000
    batch_size: int = 16
    device: str = "auto"
    quick_reports: bool = False  # smoke-test sizes for the report card, and no VP
    seed: int = 0


def generator_file(spec: str) -> Path:
    """The safetensors file of a generator given as a checkpoint (path or embedded name), 'ffhq' or an hf: set."""
    from core import hub
    from core.checkpoints import resolve_checkpoint
    if spec == "ffhq" or spec.startswith("hf:"):
        models = hub.model_set(spec).models
        if "generator" not in models:
            raise HubError(f"model set {spec!r} has no generator")
        return hub.resolve(models["generator"])
    return resolve_checkpoint(spec)


class Builder:
    """A build in `out`: its record (`build.json`), its stages and their run folders."""

    def __init__(self, generator: str, labeller: str, out: str | Path, options: BuildOptions,
                 progress: bool = True) -> None:
        from core.labels import check_labeller, identity_model
        from core.stylegan3 import Generator
        check_labeller(labeller)
        self.out, self.options, self.progress = Path(out), options, progress
        source = generator_file(generator)
        self.G = Generator.from_pretrained(source).requires_grad_(False)  # a file that is not a StyleGAN3 fails here
        digest = json.loads(source.with_suffix(".json").read_text()).get("sha256") or hashlib.sha256(
            source.read_bytes()).hexdigest()
        record = {"generator": generator, "generator_sha256": digest, "labeller": labeller}
        previous = self.out / BUILD_FILE
        if previous.is_file():
            old = json.loads(previous.read_text())
            if old.get("generator_sha256") != digest:
                raise ValueError(f"{self.out} holds the set of another generator ({old.get('generator')}, sha256 "
                                 f"{str(old.get('generator_sha256'))[:12]}...); build into a new folder, nothing in "
                                 f"it was changed")
            if old.get("labeller") != labeller:
                raise ValueError(f"{self.out} was built with the {old.get('labeller')!r} labeller; build with it "
                                 f"or into a new folder")
        elif self.out.exists() and any(self.out.iterdir()):
            raise ValueError(f"{self.out} is not empty and holds no {BUILD_FILE}: build into a new folder")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(previous, json.dumps(record, indent=2))
        self.generator_path = self.out / "generator.safetensors"
        if not self.generator_path.is_file():
            for suffix in (".json", ".safetensors"):  # the tensors last: a half-copied pair is copied again
                shutil.copy(source.with_suffix(suffix), self.generator_path.with_suffix(suffix))
        self.labeller_spec, self.identity = labeller, identity_model(labeller)
        self.stages = self.out / "stages"

    def stage(self, name: str, done: Path, work: Callable[[], Any]) -> Any:
        """Run one stage unless its result `done` exists; its run folder's status says where it is."""
        from core.train.rundir import RunDir
        run = RunDir(self.stages / name)
        if done.exists():
            if self.progress:
                print(f"[{name}] done already: {done.relative_to(self.out)}", flush=True)
            return None
        run.path.mkdir(parents=True, exist_ok=True)
        run.set_status("running", 0)
        started = time.time()
        try:
            result = work()
        except BaseException as e:
            run.set_status("failed", 0, error=f"{type(e).__name__}: {e}")
            raise
        run.set_status("finished", 0, seconds=round(time.time() - started, 1))
        return result

    # --- the stages -------------------------------------------------------------------------------------------

    def pca(self) -> None:
        from core.directions import pca_directions, sample_w, save_directions
        save_directions(self.stages / "pca" / "pca.safetensors", pca_directions(sample_w(self.G, 5000)),
                        str(self.generator_path))

    def labels(self) -> None:
        """(w, label values, names, found) of N generated faces, saved for the directions stage."""
        from core.labels import labeller
        from core.synthfaces.factors import FACTOR_NAMES
        from core.synthfaces.latent import factors_from_z, is_distilled
        n, device = self.options.samples, self.G.mapping.w_avg.device
        z = torch.randn(n, self.G.z_dim, generator=torch.Generator().manual_seed(self.options.seed + 1))
        with torch.no_grad():
            w = torch.cat([self.G.mapping(z[i:i + 100].to(device))[:, 0].cpu() for i in range(0, n, 100)])
        if is_distilled(self.G) and self.labeller_spec == "synthfaces":  # the exact factors, not readings
            values, names, found = factors_from_z(z), list(FACTOR_NAMES), torch.ones(n, dtype=torch.bool)
        else:
            read = labeller(self.labeller_spec)
            parts = []
            for i in tqdm(range(0, n, 32), disable=not self.progress, desc="labels"):
                with torch.no_grad():
                    faces = self.G.images_from_w(w[i:i + 32].to(device)).clamp(0, 1).cpu()
                parts.append(read(faces))
            values = torch.cat([p.values for p in parts])
            found = torch.cat([p.found for p in parts])
            names = parts[0].names
            if found.float().mean() < MOST_MISSING:
                raise ValueError(f"the {self.labeller_spec} labeller found a face in only {int(found.sum())} of {n} "
                                 f"generated faces; pick a labeller that reads this generator's faces")
        save_checkpoint(self.stages / "labels" / "labels.safetensors",
                        {"w": w, "values": values, "found": found},
                        {"kind": "labels", "names": names, "found": int(found.sum()), "samples": n})

    def directions(self) -> dict[str, float]:
        """Supervised directions on the labels, beside the PCA ones; returns each fit's R^2."""
        from core.checkpoints import load_checkpoint
        from core.directions import Direction, fit_direction, load_directions, save_directions
        tensors, meta = load_checkpoint(self.stages / "labels" / "labels.safetensors")
        w, values, found = tensors["w"], tensors["values"], tensors["found"].bool()
        dirs = load_directions(self.stages / "pca" / "pca.safetensors")
        r2 = {}
        for j, name in enumerate(meta["names"]):
            keep = found & torch.isfinite(values[:, j])
            if keep.sum() < 2 * (w.shape[1] + 1) or values[keep, j].std() == 0:
                continue  # too few faces to fit in W, or a reading that never changes
            vector, quality = fit_direction(w[keep], values[keep, j])
            dirs[name] = Direction(vector, float(((w[keep] - w[keep].mean(0)) @ vector).std()), "supervised",
                                   quality)
            r2[name] = quality
        save_directions(self.out / "directions.safetensors", dirs, str(self.generator_path))
        return r2

    def nice(self) -> None:
        from core.train.nice import NiceConfig, train_nice
        cfg = NiceConfig(name="nice", runs_dir=str(self.stages), generator=str(self.generator_path),
                         analyzer=self.identity, id_dim=self.G.w_dim // 2, batch_size=self.options.batch_size,
                         steps=self.options.nice_steps, device=self.options.device, seed=self.options.seed,
                         ship=True, ship_to=str(self.out / "nice"))
        train_nice(cfg, resume=(self.stages / "nice" / "checkpoints").is_dir(), progress=self.progress)

    def encoder(self) -> None:
        from core.train.encoder import EncoderConfig, train_encoder
        steps = self.options.encoder_steps
        cfg = EncoderConfig(name="encoder", runs_dir=str(self.stages), generator=str(self.generator_path),
                            analyzer=self.identity if self.identity == "synthfaces" else "",
                            weight_identity=0.5 if self.identity == "synthfaces" else 0.0,
                            steps=steps, image_from=steps // 2, device=self.options.device, seed=self.options.seed,
                            sample_every=max(1, steps // 12), checkpoint_every=max(1, steps // 12),
                            ship=True, ship_to=str(self.out / "encoder"))
        train_encoder(cfg, resume=(self.stages / "encoder" / "checkpoints").is_dir(), progress=self.progress)

    def reports(self) -> None:
        from core.reports import write_report
        from core.reports.disentanglement import QUICK, SIZES, markdown, report_card
        from core.synthfaces.latent import is_distilled
        self.manifest()  # the reports load the set's roles through the one loader
        spaces = ["generator-w"] + (["generator-nice"] if (self.out / "nice.safetensors").is_file() else [])
        if is_distilled(self.G):
            spaces = ["generator-z"] + spaces
            card = report_card(spaces, models=str(self.out), sizes=QUICK if self.options.quick_reports else SIZES,
                               vp_preset=None if self.options.quick_reports else "interactive", progress=self.progress)
            write_report(self.out / "reports" / "card", card, markdown(card))
            return
        from core.metrics.vp import vp_score
        from core.spaces import latent_space
        result = {}
        for name in spaces:  # no ground-truth factors: VP alone, which needs none
            space = latent_space(name, str(self.out))
            result[name] = vp_score(space.sample_fn, space.dim, "interactive", space.latent_range,
                                    names=space.names, heavy=space.heavy).score
        write_report(self.out / "reports" / "vp", result, "\n".join(f"| {k} | {v:.3f} |" for k, v in
                                                                     result.items()) + "\n")

    def manifest(self) -> dict[str, str]:
        """Write latent_lab.json naming every role the set holds; returns role -> file stem."""
        roles = {"generator": "stylegan3", "directions": "directions", "nice": "nice", "encoder": "encoder"}
        if self.labeller_spec == "synthfaces":
            from core.analysis import analyzer_checkpoint
            from core.checkpoints import resolve_checkpoint
            analyzer = self.out / "analyzer.safetensors"
            if not analyzer.is_file():
                source = resolve_checkpoint(analyzer_checkpoint("synthfaces"))
                for suffix in (".json", ".safetensors"):
                    shutil.copy(source.with_suffix(suffix), analyzer.with_suffix(suffix))
            roles["analyzer"] = "face_analyzer"
        models = {role: {"filename": role, "kind": kind} for role, kind in roles.items()
                  if (self.out / f"{role}.safetensors").is_file()}
        atomic_write_text(self.out / MANIFEST, json.dumps({
            "description": f"built by python -m core.build from {self.generator_path.name} with the "
                           f"{self.labeller_spec} labeller", "models": models}, indent=2))
        return {role: entry["filename"] for role, entry in models.items()}

    def run(self) -> dict[str, str]:
        """Every stage not done yet, then the manifest."""
        self.stage("pca", self.stages / "pca" / "pca.safetensors", self.pca)
        self.stage("labels", self.stages / "labels" / "labels.safetensors", self.labels)
        self.stage("directions", self.out / "directions.safetensors", self.directions)
        if self.identity is None:
            print(f"[nice] skipped: the {self.labeller_spec} labeller has no differentiable identity model (NICE "
                  f"training needs the SynthFaces analyzer or insightface's ArcFace); face mixing will say so",
                  flush=True)
        else:
            self.stage("nice", self.out / "nice.safetensors", self.nice)
        self.stage("encoder", self.out / "encoder.safetensors", self.encoder)
        self.stage("reports", self.out / "reports", self.reports)
        return self.manifest()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.build", description=__doc__.splitlines()[0])
    p.add_argument("--generator", required=True, help="a generator checkpoint (path or name), ffhq, or hf:owner/name")
    p.add_argument("--labeller", default="synthfaces", help="synthfaces, dlib or insightface[:ROOT]")
    p.add_argument("--out", required=True, help="the set's folder, e.g. sets/ffhq")
    p.add_argument("--samples", type=int, default=BuildOptions.samples, help="labelled faces for the directions")
    p.add_argument("--nice-steps", type=int, default=BuildOptions.nice_steps)
    p.add_argument("--encoder-steps", type=int, default=BuildOptions.encoder_steps)
    p.add_argument("--batch-size", type=int, default=BuildOptions.batch_size)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick-reports", action="store_true", help="smoke-test report sizes, no VP (for trying it)")
    p.add_argument("--publish", metavar="OWNER/NAME", help="then push the set to this Hub model repository")
    args = p.parse_args(argv)
    options = BuildOptions(args.samples, args.nice_steps, args.encoder_steps, args.batch_size, args.device,
                           args.quick_reports)
    try:
        builder = Builder(args.generator, args.labeller, args.out, options)
        roles = builder.run()
        print(f"the set in {args.out} has: {', '.join(roles)}; serve it with python app.py --models {args.out}")
        if args.publish:
            from core.publish import publish_set
            commit = publish_set(str(Path(args.out)), args.publish)
            print(f"published to {args.publish}; serve it pinned as hf:{args.publish}@{commit}")
    except (ValueError, OSError, CheckpointError, HubError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
