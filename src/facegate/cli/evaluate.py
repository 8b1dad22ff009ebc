"""``facegate evaluate``: measure accuracy through the same engine users get."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import click

from facegate.engine.face_models import DEFAULT_FACE_MODEL, FACE_MODEL_FAMILIES, FACE_MODELS, load_engine

_existing_file = click.Path(exists=True, dir_okay=False, path_type=Path)
_existing_dir = click.Path(exists=True, file_okay=False, path_type=Path)
_face_model = click.option(
    "--face-model", type=click.Choice(sorted(FACE_MODELS)), default=DEFAULT_FACE_MODEL, show_default=True,
    help="Which face model to measure (the default is the one `facegate serve` uses).",
)


@click.group()
def evaluate() -> None:
    """Measure verification accuracy and error rates on labelled photos."""


@evaluate.command("lfw")
@click.argument("pairs_file", type=_existing_file)
@click.argument("images_dir", type=_existing_dir)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (pairs, folds, accuracy, fmr, fnmr, ...).")
@_face_model
@click.option(
    "--fit-calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also fit the distance-to-similarity calibration on these pairs and write it here.",
)
def lfw(pairs_file: Path, images_dir: Path, as_json: bool, face_model: str, fit_calibration: Path | None) -> None:
    """k-fold verification accuracy on an LFW-format pairs file.

    PAIRS_FILE starts with "folds<TAB>pairs_per_class"; photos are read from
    IMAGES_DIR/Name/Name_NNNN.jpg. Each fold's threshold is chosen on the other folds.

    \b
    Example:
      facegate evaluate lfw ../shared/faces/lfw_erstrong/_labels/pairs.txt \\
          ../shared/faces/lfw_erstrong --json
    """
    from facegate.evaluate.lfw import describe_lfw, lfw_report

    engine = load_engine(face_model)
    result = describe_lfw(pairs_file, images_dir, face_model)
    calibration = engine.calibration
    if fit_calibration is not None:
        from facegate.evaluate.calibration_fit import fit_calibration_from_pairs

        calibration = fit_calibration_from_pairs(result.distances, result.same, engine.model_version, source=pairs_file.name)
    report = lfw_report(result, calibration, engine.model_version)
    if fit_calibration is not None:
        # Ship the error rates measured at the thresholds users will pick, beside the fit.
        measured = {key: report[key] for key in ("accuracy", "fmr", "fnmr")}
        calibration.provenance["measured_on_fit_pairs"] = measured
        fit_calibration.write_text(calibration.to_json() + "\n")
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['pairs']} pairs in {report['folds']} folds, model {report['model_version']}")
    click.echo(f"accuracy {report['accuracy']:.2%} ± {report['accuracy_std']:.2%}")
    click.echo(f"photos without a detected face: {report['photos_without_face']} of {report['photos']}")
    for level in report["fmr"]:
        click.echo(f"  similarity {level}: FMR {report['fmr'][level]:.4%}  FNMR {report['fnmr'][level]:.4%}")


@evaluate.command("detection")
@click.argument("dataset_dir", type=_existing_dir)
@click.argument("labels_tsv", type=_existing_file)
@click.option("--by", default="race,gender", show_default=True, help="Attribute columns that form the groups.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (groups, and by_size when measured).")
@_face_model
@click.option(
    "--boxes", "labelled_boxes", type=(_existing_file, _existing_dir), multiple=True, metavar="XML IMAGES_DIR",
    help="Hand-labelled boxes (dlib imglab XML) and the folder of their photos, for recall by face size. Repeatable.",
)
@click.option(
    "--canvas-photos", default=0, show_default=True,
    help="Also paste a seeded sample of this many DATASET_DIR photos small onto 1280x720 and 1920x1080 canvases.",
)
@click.option(
    "--backgrounds", "background_dirs", type=_existing_dir, multiple=True,
    help="A folder of group photos that also serve as canvas backgrounds (beside plain, noise and texture). Repeatable.",
)
@click.option("--seed", default=0, show_default=True, help="Seeds the canvas photo sample and layout.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write report.md/.html/.json and a plot here.")
def detection(
    dataset_dir: Path, labels_tsv: Path, by: str, as_json: bool, face_model: str,
    labelled_boxes: tuple[tuple[Path, Path], ...], canvas_photos: int, background_dirs: tuple[Path, ...], seed: int,
    out_dir: Path | None,
) -> None:
    """Detection recall and precision per demographic group on single-face crops, and
    recall by face size (<40, 40–80, 80–160, >160 px) with median latency.

    Every labelled photo under DATASET_DIR must hold exactly one face (as UTKFace's
    crops do): a photo with no detection is a miss, extra detections are false positives.
    Recall by face size is measured on the --boxes photos and on canvases made in memory
    from --canvas-photos of those crops (nothing is written but the report).

    \b
    Examples:
      facegate evaluate detection ../shared/faces/utkface_mattans ../shared/faces/DEMOGRAPHICS.tsv
      facegate evaluate detection ../shared/faces/utkface_mattans ../shared/faces/DEMOGRAPHICS.tsv \\
          --boxes ../shared/faces/dlib_faces/_labels/testing.xml ../shared/faces/dlib_faces/_unlabeled_or_multiface \\
          --boxes ../shared/faces/dlib_faces/_labels/training.xml ../shared/faces/dlib_faces/_unlabeled_or_multiface \\
          --canvas-photos 120 --backgrounds ../shared/faces/faceapi_bbt/_unlabeled_or_multiface --out reports/detection
    """
    from datetime import datetime, timezone

    from facegate.evaluate.datasets import PHOTO_SUFFIXES
    from facegate.evaluate.describe import count_faces, map_photos
    from facegate.evaluate.detection import detection_rates_by_group, read_imglab
    from facegate.evaluate.face_sizes import make_canvases, size_report
    from facegate.evaluate.labels import read_labels
    from facegate.evaluate.report import write_detection_report

    columns = [c.strip() for c in by.split(",") if c.strip()]
    photos = [p for p in read_labels(labels_tsv, under=dataset_dir) if all(c in p.attributes for c in columns)]
    paths = [str(p.path) for p in photos]
    groups = {str(p.path): "×".join(p.attributes[c] for c in columns) for p in photos}
    counts = map_photos(functools.partial(count_faces, model=face_model), paths, label="detecting")
    rates = detection_rates_by_group(list(zip(paths, counts)), groups)
    engine = load_engine(face_model)
    report = {"dataset": str(dataset_dir), "model_version": engine.model_version, "groups_by": columns, "groups": rates,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if labelled_boxes or canvas_photos:
        labelled = [photo for xml, images in labelled_boxes for photo in read_imglab(xml, images)]
        backgrounds = sorted(p for d in background_dirs for p in d.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        try:
            made, sources = make_canvases([p.path for p in photos], backgrounds, canvas_photos, seed) if canvas_photos else ([], 0)
        except ValueError as exc:  # no photo with exactly one face to paste
            raise click.ClickException(str(exc)) from exc
        report["by_size"] = size_report(engine.detector, labelled, made, sources, groups)
    if out_dir is not None:
        write_detection_report(report, out_dir)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for group, r in rates.items():
        click.echo(f"{group:24s} photos {r['photos']:5d}  recall {r['recall']:.3f}  precision {r['precision']:.3f}")
    for name, summary in _size_sets(report.get("by_size", {})).items():
        bins = "  ".join(f"{label} {_or_na(cell['recall'])} ({cell['found']}/{cell['faces']})"
                         for label, cell in summary["recall_by_size"].items())
        click.echo(f"{name:24s} {bins}  false boxes {summary['false_boxes']}  p50 {1000 * summary['p50_seconds']:.0f} ms")


def _size_sets(by_size: dict) -> dict[str, dict]:
    """The labelled photos and each canvas size, as rows of the recall-by-size summary."""
    sets = {"labelled photos": by_size["labelled"]} if "labelled" in by_size else {}
    return sets | {f"canvases {k}": v for k, v in by_size.get("canvases", {}).get("by_canvas_size", {}).items()}


@evaluate.command("boxes")
@click.argument("imglab_xml", type=_existing_file)
@click.argument("images_dir", type=_existing_dir)
@click.option("--json", "as_json", is_flag=True)
@_face_model
def boxes(imglab_xml: Path, images_dir: Path, as_json: bool, face_model: str) -> None:
    """Detection recall and precision against hand-labelled boxes (dlib imglab XML).

    \b
    Example:
      facegate evaluate boxes ../shared/faces/dlib_faces/_labels/testing.xml \\
          ../shared/faces/dlib_faces/_unlabeled_or_multiface
    """
    from facegate.engine.image import decode_image
    from facegate.evaluate.detection import read_imglab, score_detections

    engine = load_engine(face_model)
    labelled = detected = hits = 0
    for photo in read_imglab(imglab_xml, images_dir):
        faces = engine.detect(decode_image(photo.path.read_bytes()), details=False)
        score = score_detections(photo.boxes, [f.detection.box for f in faces])
        labelled, detected, hits = labelled + score.labelled, detected + score.detected, hits + score.true_positives
    result = {
        "labelled_faces": labelled,
        "detections": detected,
        "recall": hits / labelled if labelled else None,
        "precision": hits / detected if detected else None,
    }
    click.echo(json.dumps(result, indent=2) if as_json else " ".join(f"{k}={v}" for k, v in result.items()))


def _emit(report: dict, as_json: bool, summary: str) -> None:
    click.echo(json.dumps(report, indent=2) if as_json else summary)


@evaluate.command("verification")
@click.argument("dataset_dir", type=_existing_dir)
@click.option("--pairs", "pairs_file", type=_existing_file, help="An LFW-format pairs file; default: generated pairs.")
@click.option("--max-genuine", default=20_000, show_default=True, help="Cap on generated genuine pairs (seeded sample).")
@click.option("--impostors", default=100_000, show_default=True, help="Generated impostor pairs (seeded sample).")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write report.md/.html/.json and plots here.")
@click.option(
    "--fit-calibration", "calibration_out", type=click.Path(dir_okay=False, path_type=Path),
    help="Fit the distance-to-similarity calibration on these pairs, score with it, and write it here "
         "(apply it with FACEGATE_CALIBRATION=FILE).",
)
@_face_model
def verification(
    dataset_dir: Path, pairs_file: Path | None, max_genuine: int, impostors: int, seed: int, as_json: bool,
    out_dir: Path | None, calibration_out: Path | None, face_model: str,
) -> None:
    """1:1 verification error rates on a folder-per-identity photo set.

    Reports EER, FMR and FNMR with Wilson intervals at similarity 80/90/95/99, and the
    similarity needed for FMR 1e-3 and 1e-4. Photos without a detected face are listed.
    --fit-calibration re-calibrates similarity on your own photos.

    \b
    Examples:
      facegate evaluate verification ../shared/faces/lfw_erstrong --out reports/verification
      facegate evaluate verification my_people/ --fit-calibration my_calibration.json
      FACEGATE_CALIBRATION=my_calibration.json facegate serve
    """
    from facegate.evaluate.report import write_verification_report
    from facegate.evaluate.verification import verification_report

    report, scores, calibration = verification_report(
        dataset_dir, pairs_file, max_genuine, impostors, seed, fit_calibration=calibration_out is not None, model=face_model
    )
    if out_dir is not None:
        write_verification_report(report, scores, out_dir)
    if calibration_out is not None:
        # Ship the error rates measured at the thresholds users will pick, beside the fit.
        calibration.provenance["measured_on_fit_pairs"] = {"eer": report["eer"], "at_similarity": report["at_similarity"]}
        calibration_out.write_text(calibration.to_json() + "\n")
    rates = report["at_similarity"]
    _emit(report, as_json, f"EER {report['eer']:.4f}; " + "; ".join(
        f"@{k}: FMR {v['fmr']:.5f} FNMR {v['fnmr']:.4f}" for k, v in rates.items()))


@evaluate.command("demographics")
@click.argument("dataset_dir", type=_existing_dir)
@click.argument("labels_tsv", type=_existing_file)
@click.option("--impostors-per-group", default=20_000, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report (a `groups` list) as JSON.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write report.md/.html/.json and plots here.")
@_face_model
def demographics(
    dataset_dir: Path, labels_tsv: Path, impostors_per_group: int, seed: int, as_json: bool, out_dir: Path | None, face_model: str
) -> None:
    """Per-group detection failures, FMR and FNMR at one global threshold, with NIST-style ratios.

    LABELS_TSV has a `path` column (relative to the TSV's folder) and attribute columns;
    only labelled photos under DATASET_DIR are used.

    \b
    Example:
      facegate evaluate demographics ../shared/faces/utkface_mattans ../shared/faces/DEMOGRAPHICS.tsv
    """
    from facegate.evaluate.demographics import demographics_report
    from facegate.evaluate.report import write_demographics_report

    try:
        report, scores = demographics_report(dataset_dir, labels_tsv, impostors_per_group, seed=seed, model=face_model)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if out_dir is not None:
        write_demographics_report(report, scores, out_dir)
    lines = [f"{g['attribute']:12s} {g['group']:16s} photos {g['n_photos']:5d} no-face {g['detection_failure_rate']:.3f} "
             f"FMR {_or_na(g['fmr'])} FNMR {_or_na(g['fnmr'])}"
             f"{' (small sample)' if g['small_sample'] else ''}" for g in report["groups"]]
    _emit(report, as_json, "\n".join(lines))


@evaluate.command("identification")
@click.argument("gallery_dir", type=_existing_dir)
@click.argument("probes_dir", type=_existing_dir)
@click.option("--distractors", "distractors_dir", type=_existing_dir, help="Photos of people not in the gallery, searched as non-mated probes.")
@click.option("--threads", default=2, show_default=True, help="Concurrent searches.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write report.md/.html/.json and plots here.")
@_face_model
def identification(
    gallery_dir: Path, probes_dir: Path, distractors_dir: Path | None, threads: int, as_json: bool, out_dir: Path | None, face_model: str
) -> None:
    """1:N identification through IndexFaces and SearchFacesByImage on a throwaway instance.

    Enrols one photo per identity folder of GALLERY_DIR, then searches with every other
    photo in PROBES_DIR (the same folder is fine) and every photo under --distractors.
    Reports rank-1 and rank-5 rates and FNIR at FPIR 0.01 and 0.001.

    \b
    Example:
      facegate evaluate identification ../shared/faces/celeba_matush97 ../shared/faces/celeba_matush97 \\
          --distractors ../shared/faces/lfw_erstrong --out reports/identification
    """
    from facegate.evaluate.identification import identification_report, search_scores
    from facegate.evaluate.report import write_identification_report

    try:
        report, searches = identification_report(gallery_dir, probes_dir, distractors_dir, threads, model=face_model)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if out_dir is not None:
        write_identification_report(report, search_scores(searches), out_dir)
    fnir = "; ".join(f"FNIR@FPIR {k}: {v['fnir']:.4f} (similarity {v['similarity']:.2f})"
                     for k, v in report["fnir_at_fpir"].items() if v is not None)
    ranks = "; ".join(f"rank-{k} {_or_na(report[f'rank{k}']['rate'])}" for k in (1, 5))
    _emit(report, as_json, f"{report['mated_searches']} mated, {report['non_mated_searches']} non-mated searches; {ranks}; {fnir}")


def _or_na(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.4f}"


@evaluate.command("normalisation")
@click.argument("reference_dir", type=_existing_dir)
@click.option("--face-model", type=click.Choice(sorted(FACE_MODEL_FAMILIES)),
              default=DEFAULT_FACE_MODEL, show_default=True, help="The model family to fit it for.")
@click.option("--clusters", default=16, show_default=True, help="k-means clusters (small ones are merged).")
@click.option("--one-person-per-photo", is_flag=True,
              help="Every photo shows a different person (as in UTKFace); otherwise each folder is one person.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the fitted normalisation (JSON).")
@click.option("--cross-check", "labels_tsv", type=_existing_file,
              help="Also measure, on the labelled photos of REFERENCE_DIR, the worst race×gender FMR and the "
                   "worst-to-best race ratio at the global FMR 1e-3 threshold, with and without normalisation, "
                   "by 2-fold cross-fitting. Labels only measure; they never enter the fit.")
@click.option("--json", "as_json", is_flag=True)
def normalisation(
    reference_dir: Path, face_model: str, clusters: int, one_person_per_photo: bool, seed: int, out_file: Path,
    labels_tsv: Path | None, as_json: bool,
) -> None:
    """Fit label-free score normalisation for a model on unlabelled photos.

    The photos' descriptors are clustered, each cluster's impostor threshold at FMR 1e-3 is
    measured, and every comparison is later shifted by its two faces' clusters, so no
    region of face space is falsely matched more than the rest. Serve with
    `--face-model MODEL-fsn` to apply the shipped one.

    \b
    Example (how the shipped files were made):
      facegate evaluate normalisation ../shared/faces/utkface_mattans --one-person-per-photo \\
          --face-model sface --out src/facegate/engine/normalisation-sface.json \\
          --cross-check ../shared/faces/DEMOGRAPHICS.tsv
    """
    from facegate.evaluate.datasets import photos_by_folder
    from facegate.evaluate.normalisation_fit import fit_score_normalisation
    from facegate.evaluate.scoring import describe_set

    photos = photos_by_folder(reference_dir)
    paths = [str(p) for p in photos]
    identities = paths if one_person_per_photo else list(photos.values())
    described = describe_set(paths, "reference photos", face_model)
    found = described.detected
    descriptors = described.descriptors[found]
    kept = [i for i, ok in zip(identities, found) if ok]
    fitted = fit_score_normalisation(descriptors, kept, clusters, seed=seed, source=str(reference_dir))
    fitted.provenance["model_version"] = described.model_version
    out_file.write_text(fitted.to_json() + "\n")
    report: dict = {"written": str(out_file), **fitted.provenance}
    if labels_tsv is not None:
        report["cross_check"] = _cross_check(labels_tsv, [p for p, ok in zip(paths, found) if ok], descriptors, kept, clusters, seed)
    _emit(report, as_json, json.dumps(report.get("cross_check", report), indent=2))


def _cross_check(
    labels_tsv: Path, paths: list[str], descriptors: Any, identities: list[str], clusters: int, seed: int
) -> dict[str, Any]:
    from facegate.evaluate.labels import read_labels
    from facegate.evaluate.normalisation_check import cross_fitted_differential

    labels = {str(p.path): p.attributes for p in read_labels(labels_tsv)}
    rows = [i for i, p in enumerate(paths) if {"race", "gender"} <= set(labels.get(p, {}))]
    if not rows:
        raise click.ClickException(f"no photo under the reference folder has race and gender in {labels_tsv}")
    cells = [f"{labels[paths[i]]['race']}×{labels[paths[i]]['gender']}" for i in rows]
    races = [labels[paths[i]]["race"] for i in rows]
    chosen, people = descriptors[rows], [identities[i] for i in rows]
    return {
        "race×gender": cross_fitted_differential(chosen, people, cells, clusters, seed),
        "race": cross_fitted_differential(chosen, people, races, clusters, seed),
    }
