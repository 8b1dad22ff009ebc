"""Reports a regulator could read: Markdown and HTML with PNG plots, plus the JSON.

Both documents are rendered from the same rows, so they never disagree. Each states the
dataset, the counts, the model version, the calibration and the date.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
import numpy as np  # noqa: E402

from facegate.evaluate.stats import roc_det  # noqa: E402


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.3f}%"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def det_plot(
    curves: dict[str, dict[str, np.ndarray]], path: Path, title: str,
    axis_labels: tuple[str, str] = ("false match rate", "false non-match rate"),
) -> None:
    """FNMR against FMR on log axes, one curve per group (groups without genuine pairs skipped).
    Identification uses the same plot with FPIR and FNIR, hence ``axis_labels``."""
    figure, axes = plt.subplots(figsize=(6.5, 5))
    for label, s in curves.items():
        if len(s["genuine"]) and len(s["impostor"]):
            _, fmr, fnmr = roc_det(s["genuine"], s["impostor"])
            keep = (fmr > 0) & (fnmr > 0)
            if keep.any():
                axes.plot(fmr[keep], fnmr[keep], label=label)
    axes.set(xlabel=axis_labels[0], ylabel=axis_labels[1], title=title)
    if axes.get_legend_handles_labels()[0]:
        axes.set(xscale="log", yscale="log")
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "no trade-off to plot: no group has both\nfalse matches and false non-matches",
                  ha="center", va="center", transform=axes.transAxes)
    axes.grid(True, which="both", alpha=0.3)
    _save(figure, path)


def roc_plot(scores: dict[str, np.ndarray], path: Path, title: str) -> None:
    """True match rate (1 - FNMR) against FMR on a log FMR axis: the ROC most papers print."""
    figure, axes = plt.subplots(figsize=(6.5, 5))
    _, fmr, fnmr = roc_det(scores["genuine"], scores["impostor"])
    keep = fmr > 0
    axes.plot(fmr[keep], 1 - fnmr[keep])
    axes.set(xscale="log", xlabel="false match rate", ylabel="true match rate", title=title)
    axes.grid(True, which="both", alpha=0.3)
    _save(figure, path)


def fmr_by_threshold_plot(curves: dict[str, dict[str, np.ndarray]], path: Path, title: str) -> None:
    """Each group's FMR as the similarity threshold rises: where a DET cannot be drawn (one
    photo per person), this still shows the differential an operator's threshold meets."""
    figure, axes = plt.subplots(figsize=(6.5, 5))
    thresholds = np.linspace(50, 100, 501)
    plotted = False
    for label, s in curves.items():
        impostor = np.sort(np.asarray(s["impostor"], float))
        if impostor.size:
            fmr = (impostor.size - np.searchsorted(impostor, thresholds, side="left")) / impostor.size
            keep = fmr > 0
            axes.plot(thresholds[keep], fmr[keep], label=label)
            plotted = plotted or bool(keep.any())
    for marker in (80, 99):
        axes.axvline(marker, color="grey", linestyle="--", linewidth=0.8)
    if plotted:  # a log axis with nothing on it cannot be drawn
        axes.set(yscale="log")
    else:
        axes.text(75, 0.5, "no impostor pair scored 50 or more", ha="center")
    axes.set(xlabel="similarity threshold", ylabel="false match rate (same-group impostors)", title=title)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    _save(figure, path)


def score_plot(curves: dict[str, dict[str, np.ndarray]], path: Path, title: str, ylabel: str = "share of pairs") -> None:
    """Similarity distributions of genuine and impostor pairs, per group."""
    figure, axes = plt.subplots(figsize=(6.5, 4))
    bins = np.linspace(0, 100, 51)
    for label, s in curves.items():
        both = len(s["genuine"]) > 0 and len(s["impostor"]) > 0
        for kind, style in (("genuine", "-"), ("impostor", ":")):
            if len(s[kind]):
                counts, edges = np.histogram(s[kind], bins=bins)
                axes.plot(edges[:-1] + 1, counts / counts.sum(), style, label=f"{label} {kind}" if both else label)
    axes.set(yscale="log", xlabel="similarity (0-100)", ylabel=ylabel, title=title)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)
    _save(figure, path)


def _documents(title: str, intro: list[tuple[str, str]], tables: list[tuple[str, list[str], list[list[str]]]], images: list[str], notes: list[str]) -> tuple[str, str]:
    md = [f"# {title}", ""] + [f"- **{k}**: {v}" for k, v in intro] + [""]
    page = [f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:.2em .6em;border-bottom:1px solid #ddd}</style>",
            f"<h1>{html.escape(title)}</h1><ul>"] + [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in intro] + ["</ul>"]
    for caption, header, rows in tables:
        md += [f"## {caption}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        page += [f"<h2>{html.escape(caption)}</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
        page += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows] + ["</table>"]
    for image in images:
        md += [f"![{image}]({image})", ""]
        page += [f'<p><img src="{html.escape(image)}" alt="{html.escape(image)}"></p>']
    md += notes
    page += [f"<p>{html.escape(n)}</p>" for n in notes]
    return "\n".join(md) + "\n", "\n".join(page) + "\n"


def _write(out_dir: Path, report: dict[str, Any], md: str, page: str) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(md)
    (out_dir / "report.html").write_text(page)


def write_verification_report(report: dict[str, Any], scores: dict[str, np.ndarray], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    det_plot({"all pairs": scores}, out_dir / "det.png", "DET: verification")
    roc_plot(scores, out_dir / "roc.png", "ROC: verification")
    score_plot({"all pairs": scores}, out_dir / "scores.png", "Similarity distributions")
    rows = [[s, _percent(r["fmr"]), _interval(r["fmr_interval"]), _percent(r["fnmr"]), _interval(r["fnmr_interval"])]
            for s, r in report["at_similarity"].items()]
    needed = [[k, f"{v['similarity']:.2f}", _percent(v["fnmr"]), "yes" if v["resolvable"] else "no (too few impostor pairs)"]
              for k, v in report["similarity_for_fmr"].items()]
    md, page = _documents(
        "facegate verification report",
        _intro(report) + [("EER", f"{_percent(report['eer'])} at similarity {report['eer_similarity']:.1f}"),
                          ("accuracy at the calibrated decision (similarity 50)", _percent(report["accuracy_at_calibrated_decision"])),
                          ("photos without a detected face", str(report["detection_failures"]))],
        [("Error rates by similarity threshold (95% Wilson intervals)", ["similarity", "FMR", "FMR interval", "FNMR", "FNMR interval"], rows),
         ("Similarity needed for a target false match rate", ["target FMR", "similarity", "FNMR there", "resolvable"], needed)],
        ["det.png", "roc.png", "scores.png"],
        ["A pair with a photo in which no face was detected counts as a non-match; such photos are listed in report.json."],
    )
    _write(out_dir, report, md, page)


def write_demographics_report(report: dict[str, Any], scores: dict[str, dict[str, dict[str, np.ndarray]]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tables, images = [], []
    for attribute, curves in scores.items():
        safe = attribute.replace("×", "_x_")
        det_plot(curves, out_dir / f"det_{safe}.png", f"DET by {attribute}")
        fmr_by_threshold_plot(curves, out_dir / f"fmr_{safe}.png", f"False match rate by threshold and {attribute}")
        score_plot(curves, out_dir / f"scores_{safe}.png", f"Similarity by {attribute}")
        images += [f"det_{safe}.png", f"fmr_{safe}.png", f"scores_{safe}.png"]
        rows = [[g["group"], str(g["n_photos"]), str(g["n_identities"]), _percent(g["detection_failure_rate"]),
                 _percent(g["fmr"]), _ratio(g["fmr_ratio_to_lowest"]), _percent(g["fnmr"]), _ratio(g["fnmr_ratio_to_lowest"]),
                 _percent(g["at"]["80"]["fmr"]), _percent(g["at"]["99"]["fnmr"]), "yes" if g["small_sample"] else ""]
                for g in report["groups"] if g["attribute"] == attribute]
        tables.append((f"By {attribute}", ["group", "photos", "identities", "no face", "FMR", "FMR ratio", "FNMR", "FNMR ratio",
                                            "FMR @80", "FNMR @99", "small sample"], rows))
    thresholds = report["thresholds"]
    md, page = _documents(
        "facegate demographic differentials",
        _intro(report) + [("global threshold", f"similarity {thresholds['fmr_1e-3']:.2f} (FMR 1e-3 over all impostor pairs)"),
                          ("photos without a detected face", str(report["detection_failures"]))],
        tables, images,
        ["FMR and FNMR are at the global threshold; ratios divide each group's rate by the lowest nonzero rate in its attribute.",
         "Impostor pairs are drawn within each group. n/a: not measurable (no genuine pairs, e.g. one photo per person).",
         "Labels are dataset annotations, not self-identification. A small sample is flagged, not hidden."],
    )
    _write(out_dir, report, md, page)


def write_identification_report(report: dict[str, Any], scores: dict[str, np.ndarray], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = {"searches": {"genuine": scores["mated"], "impostor": scores["non_mated"]}}
    det_plot(curves, out_dir / "det.png", "DET: identification", ("false positive identification rate", "false negative identification rate"))
    score_plot({"mate (mated)": {"genuine": scores["mated"], "impostor": np.empty(0)},
                "best candidate (non-mated)": {"genuine": np.empty(0), "impostor": scores["non_mated"]}},
               out_dir / "scores.png", "Similarity of mates and of non-mated best candidates", "share of searches")
    rows = [[f"rank {k}", _percent(report[f"rank{k}"]["rate"]), _interval(report[f"rank{k}"]["rate_interval"])] for k in (1, 5)]
    at_fpir = [[target, "n/a" if v is None else f"{v['similarity']:.2f}", "n/a" if v is None else _percent(v["fnir"]),
                "n/a" if v is None else _interval(v["fnir_interval"]), "yes" if v and v["small_sample"] else ""]
               for target, v in report["fnir_at_fpir"].items()]
    at_similarity = [[s, _percent(v["fpir"]), _interval(v["fpir_interval"]), _percent(v["fnir"]), _interval(v["fnir_interval"])]
                     for s, v in report["at_similarity"].items()]
    md, page = _documents(
        "facegate identification report",
        _intro(report) + [("searches", f"{report['mated_searches']} mated, {report['non_mated_searches']} non-mated"),
                          ("candidate list", f"{report['candidate_list_length']} (SearchFacesByImage MaxFaces)"),
                          ("failed searches (no face in the probe)", str(len(report["failed_searches"]))),
                          ("gallery identities that could not be enrolled", str(len(report["unenrollable_identities"])))],
        [("Closed-set identification rate (95% Wilson intervals)", ["rank", "rate", "interval"], rows),
         ("FNIR at a target FPIR", ["FPIR", "similarity", "FNIR", "FNIR interval", "small sample"], at_fpir),
         ("FPIR and FNIR by similarity threshold", ["similarity", "FPIR", "FPIR interval", "FNIR", "FNIR interval"], at_similarity)],
        ["det.png", "scores.png"],
        ["Every search went through IndexFaces/SearchFacesByImage on a throwaway facegate instance, governance gate included.",
         "A failed search counts as a miss (mated) or as no candidate (non-mated); failures are listed in report.json."],
    )
    _write(out_dir, report, md, page)


def recall_by_size_plot(sets: dict[str, dict[str, Any]], bins: list[str], path: Path, title: str) -> None:
    """Recall in each face-size bin, one line per image set; a bin without faces is a gap."""
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for label, summary in sets.items():
        recalls = [summary["recall_by_size"][b]["recall"] for b in bins]
        axes.plot(bins, [np.nan if r is None else r for r in recalls], marker="o", label=label)
    axes.set(xlabel="face side (px, in the analysed image)", ylabel="recall", ylim=(0, 1.02), title=title)
    axes.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
    axes.legend(fontsize=8)
    axes.grid(True, alpha=0.3)
    _save(figure, path)


def _found(summary: dict[str, Any], label: str) -> str:
    cell = summary["recall_by_size"][label]
    return "–" if not cell["faces"] else f"{_percent(cell['recall'])} ({cell['found']}/{cell['faces']})"


def _size_rows(sets: dict[str, dict[str, Any]], bins: list[str]) -> list[list[str]]:
    return [[name, str(s["images"]), *(_found(s, b) for b in bins),
             "n/a" if s["false_boxes"] is None else str(s["false_boxes"]), f"{1000 * s['p50_seconds']:.0f}"]
            for name, s in sets.items()]


def write_detection_report(report: dict[str, Any], out_dir: Path) -> None:
    """Per-group recall on single-face photos, and recall by face size on labelled photos
    and generated canvases, with each set's median milliseconds per image."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: list[tuple[str, list[str], list[list[str]]]] = [(
        f"By {' × '.join(report['groups_by'])} (single-face photos)", ["group", "photos", "recall", "precision"],
        [[g, str(r["photos"]), _percent(r["recall"]), _percent(r["precision"])] for g, r in report["groups"].items()],
    )]
    images = []
    sizes = report.get("by_size")
    if sizes is not None:
        bins = sizes["size_bins"]
        sets = {"labelled photos": sizes["labelled"]} if "labelled" in sizes else {}
        if "canvases" in sizes:
            sets |= {f"canvases {k}": v for k, v in sizes["canvases"]["by_canvas_size"].items()}
        recall_by_size_plot(sets, bins, out_dir / "recall_by_size.png", f"Recall by face size: {sizes['detector']}")
        images.append("recall_by_size.png")
        header = ["set", "images", *(f"recall {b} px" for b in bins), "false boxes", "p50 ms"]
        tables.append(("Recall by face size", header, _size_rows(sets, bins)))
        if "canvases" in sizes:
            canvases = sizes["canvases"]
            tables.append(("Canvases by pasted face side", ["face side", "images", *(f"recall {b} px" for b in bins),
                                                             "false boxes", "p50 ms"], _size_rows(canvases["by_face_side"], bins)))
            tables.append(("Canvases by background", ["background", "images", *(f"recall {b} px" for b in bins),
                                                       "false boxes", "p50 ms"], _size_rows(canvases["by_background"], bins)))
            if "by_group" in canvases:
                tables.append((f"Canvases by {' × '.join(report['groups_by'])} of the pasted face",
                               ["group", "faces", *(f"recall {b} px" for b in bins)],
                               [[g, str(r["faces"]), *(_found(r, b) for b in bins)] for g, r in canvases["by_group"].items()]))
    md, page = _documents(
        "facegate detection report",
        [("dataset", report["dataset"]), ("model", report["model_version"]),
         *([("detector", sizes["detector"]), ("canvas face sources", str(sizes["canvases"]["face_sources"]))]
           if sizes is not None and "canvases" in sizes else []),
         ("date", report["date"])],
        tables, images,
        ["A face is found when a detection overlaps its box by IoU 0.3 or more (one detection per face). "
         "Face sides are the square root of the truth box's area, in the pixels the detector analysed.",
         "Canvases are made at evaluation time: single-face photos cut out, scaled so that dlib HOG's box "
         "(the convention of the hand-labelled boxes) has the given side, and pasted onto plain, noise, "
         "texture and group-photo backgrounds, sent as JPEG. A false box matches no truth box; on canvases only "
         "those on the background count (a pasted photo may show a neighbour's face), and none on group photos, "
         "whose own faces are unlabelled.",
         "p50 ms: median milliseconds to decode and detect one image, on one thread of this machine."],
    )
    _write(out_dir, report, md, page)


def _interval(bounds: list[float]) -> str:
    return f"{_percent(bounds[0])}–{_percent(bounds[1])}"


def _intro(report: dict[str, Any]) -> list[tuple[str, str]]:
    if "dataset" in report:
        intro = [("dataset", report["dataset"]), ("photos", str(report["photos"])), ("identities", str(report["identities"]))]
    else:
        intro = [("gallery", f"{report['gallery_dir']} ({report['enrolled']} of {report['gallery_identities']} identities enrolled, one photo each)"),
                 ("probes", report["probes_dir"]), ("distractors", report["distractors_dir"] or "none")]
    if "genuine_pairs" in report:
        intro.append(("pairs", f"{report['genuine_pairs']} genuine, {report['impostor_pairs']} impostor"))
    if "calibration" in report:
        intro.append(("calibration", f"slope {report['calibration']['slope']:.2f}, midpoint {report['calibration']['midpoint']:.4f}"))
    seeded = [("seed", str(report["seed"]))] if "seed" in report else []
    return intro + [("model", report["model_version"])] + seeded + [("date", report["date"])]
