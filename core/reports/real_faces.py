"""Real photographs through the real-face pipeline, on pictures that packages ship: scikit-image's astronaut (Eileen
Collins, NASA, public domain), the same photo mirrored, and insightface's group photo (t1.jpg).

    python -m core.reports.real_faces [--backend dlib] [--out docs/real_faces]

Writes pipeline.png (photo with the face marked -> FFHQ crop -> ArcFace crop) and report.md: faces found, and
the identity distance of every pair with the backend's verdict (same person or not).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from core.imaging import save_image
from core.reports import write_report


def photos() -> dict[str, np.ndarray]:
    import insightface
    import skimage.data
    astronaut = skimage.data.astronaut()
    return {"astronaut": astronaut, "astronaut, mirrored": np.ascontiguousarray(astronaut[:, ::-1]),
            "group photo (largest face)": np.ascontiguousarray(insightface.data.get_image("t1", to_rgb=True))}


def report(backend) -> tuple[dict, dict]:
    from core.analysis.photos import find_face, identity_distance
    faces = {name: find_face(image, backend) for name, image in photos().items()}
    names = list(faces)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d, same = identity_distance(faces[a], faces[b], backend)
            pairs.append({"a": a, "b": b, "distance": d, "same_person": same})
    result = {"backend": backend.name, "licence": backend.licence, "threshold": backend.same_person_distance,
              "faces_found": {n: f.faces_found for n, f in faces.items()}, "pairs": pairs}
    return result, faces


def markdown(result: dict) -> str:
    lines = [f"Backend `{result['backend']}` (same person below {result['threshold']:g}); faces found: "
             + ", ".join(f"{n} {k}" for n, k in result["faces_found"].items()) + ".", "",
             "| photo | photo | identity distance | same person? |", "|---|---|---:|---|"]
    lines += [f"| {p['a']} | {p['b']} | {p['distance']:.3f} | {'yes' if p['same_person'] else 'no'} |"
              for p in result["pairs"]]
    return "\n".join(lines + ["", f"Licences: {result['licence']}."]) + "\n"


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from core.analysis import FaceModelUnavailable, faces_backend
    from core.analysis.photos import pipeline_picture
    p = argparse.ArgumentParser(prog="python -m core.reports.real_faces", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="dlib")
    p.add_argument("--out", default="docs/real_faces")
    args = p.parse_args(argv)
    try:
        result, faces = report(faces_backend(args.backend))
    except (FaceModelUnavailable, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    write_report(out, result, markdown(result))
    save_image(Image.fromarray(pipeline_picture(faces["astronaut"])), out / "pipeline.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
