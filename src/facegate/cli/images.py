"""The ``detect`` and ``compare`` commands: DetectFaces and CompareFaces on local files.

They run through the same governance gate as the API (as the local operator) and land
in the audit log of the data directory (``$FACEGATE_DATA_DIR``, else ``./data``)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import click
from PIL import Image, ImageDraw, ImageOps
from rich.console import Console
from rich.table import Table

from facegate.governance.gate import Request
from facegate.governance.identity import LOCAL_OPERATOR
from facegate.server import Facegate, default_data_dir
from facegate.service.exceptions import RekognitionError


def _image_param(path: Path) -> dict[str, bytes]:
    return {"Bytes": path.read_bytes()}


def _run(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """Local commands pass the governance gate too, as the local operator, and are audited."""
    facegate = Facegate.open(default_data_dir())
    request = Request(LOCAL_OPERATOR, operation, params, "local", str(uuid.uuid4()), None)
    try:
        return facegate.gate.handle(request)
    except RekognitionError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    finally:
        facegate.store.close()


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the DetectFaces response as JSON.")
@click.option("--draw", type=click.Path(dir_okay=False, path_type=Path), help="Write a copy with boxes and landmarks.")
def detect(image: Path, as_json: bool, draw: Path | None) -> None:
    """Find faces in IMAGE (JPEG or PNG) with landmarks, pose and quality.

    \b
    Example:
      facegate detect group.jpg --json --draw boxes.jpg
    """
    response = _run("DetectFaces", {"Image": _image_param(image), "Attributes": ["ALL"]})
    if draw is not None:
        _draw(image, response["FaceDetails"], draw)
    if as_json:
        click.echo(json.dumps(response, indent=2))
        return
    table = Table(title=f"{len(response['FaceDetails'])} face(s) in {image.name}")
    for column in ("#", "Left", "Top", "Width", "Height", "Confidence", "Roll", "Yaw", "Pitch", "Sharpness", "Brightness"):
        table.add_column(column, justify="right")
    for n, face in enumerate(response["FaceDetails"], 1):
        box, pose, quality = face["BoundingBox"], face["Pose"], face["Quality"]
        table.add_row(
            str(n),
            *(f"{box[k]:.3f}" for k in ("Left", "Top", "Width", "Height")),
            f"{face['Confidence']:.2f}",
            *(f"{pose[k]:.1f}" for k in ("Roll", "Yaw", "Pitch")),
            f"{quality['Sharpness']:.1f}",
            f"{quality['Brightness']:.1f}",
        )
    Console().print(table)


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--threshold", default=80.0, show_default=True, help="SimilarityThreshold, 0-100.")
@click.option("--json", "as_json", is_flag=True, help="Print the CompareFaces response as JSON.")
def compare(source: Path, target: Path, threshold: float, as_json: bool) -> None:
    """Compare the largest face in SOURCE with every face in TARGET.

    \b
    Example:
      facegate compare id_card.jpg selfie.jpg --threshold 99 --json
    """
    params = {"SourceImage": _image_param(source), "TargetImage": _image_param(target), "SimilarityThreshold": threshold}
    response = _run("CompareFaces", params)
    if as_json:
        click.echo(json.dumps(response, indent=2))
        return
    click.echo(f"{len(response['FaceMatches'])} match(es) at similarity >= {threshold:g}")
    for match in response["FaceMatches"]:
        box = match["Face"]["BoundingBox"]
        click.echo(f"  similarity {match['Similarity']:.2f}  face at left={box['Left']:.3f} top={box['Top']:.3f}")
    click.echo(f"{len(response['UnmatchedFaces'])} unmatched face(s)")


def _draw(path: Path, details: list[dict[str, Any]], out: Path) -> None:
    """Render boxes and landmarks on the upright image (EXIF orientation applied, as detection saw it)."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    width, height = image.size
    pen = ImageDraw.Draw(image)
    stroke = max(2, round(min(width, height) / 250))
    for face in details:
        box = face["BoundingBox"]
        left, top = box["Left"] * width, box["Top"] * height
        pen.rectangle([left, top, left + box["Width"] * width, top + box["Height"] * height], outline=(0, 255, 0), width=stroke)
        for mark in face["Landmarks"]:
            x, y = mark["X"] * width, mark["Y"] * height
            pen.ellipse([x - stroke, y - stroke, x + stroke, y + stroke], fill=(255, 64, 0))
    image.save(out)
