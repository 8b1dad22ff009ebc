"""The accuracy page: the latest ``facegate evaluate`` reports with their plots, and the
operator warning wherever the worst group's false match rate is more than twice the best's.

Reports are read from the reports directory (``$FACEGATE_REPORTS_DIR``, else ``./reports``,
the folder DEVELOPERS.md's commands write to): each sub-folder with a ``report.json``.
Only PNG files directly inside such a folder are served.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from facegate.console.context import SECURITY_HEADERS, Console
from facegate.governance.console_accounts import Session

DIFFERENTIAL_LIMIT = 2.0
"""Worst group's FMR over the best's above which the page warns the operator."""
_PLOT = re.compile(r"[A-Za-z0-9_.-]+\.png")


def reports(directory: Path) -> list[dict[str, Any]]:
    """Every report found, newest first, with its kind, plots and warnings."""
    found = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*/report.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(report, dict):
            continue
        folder = path.parent
        found.append({
            "name": folder.name, "kind": _kind(report), "date": str(report.get("date", "")),
            "model_version": report.get("model_version"), "report": report,
            "plots": sorted(p.name for p in folder.glob("*.png") if _PLOT.fullmatch(p.name)),
            "warnings": differential_warnings(report),
        })
    return sorted(found, key=lambda r: r["date"], reverse=True)


def _kind(report: dict[str, Any]) -> str:
    if "groups" in report:
        return "demographics"
    if "gallery_dir" in report:
        return "identification"
    return "verification" if "eer" in report else "report"


def differential_warnings(report: dict[str, Any]) -> list[str]:
    """For each attribute of a demographics report, a warning when its worst group's FMR is
    more than ``DIFFERENTIAL_LIMIT`` times its best's (or the best's is 0 and the worst's is not)."""
    by_attribute: dict[str, list[tuple[str, float]]] = {}
    for group in report.get("groups") or []:
        if isinstance(group, dict) and isinstance(group.get("fmr"), (int, float)):
            by_attribute.setdefault(str(group.get("attribute")), []).append((str(group.get("group")), float(group["fmr"])))
    warnings = []
    for attribute, rates in by_attribute.items():
        worst, best = max(rates, key=lambda r: r[1]), min(rates, key=lambda r: r[1])
        if worst[1] > 0 and (best[1] == 0 or worst[1] / best[1] > DIFFERENTIAL_LIMIT):
            ratio = "infinitely many times" if best[1] == 0 else f"{worst[1] / best[1]:.1f}x"
            warnings.append(
                f"By {attribute}: the false match rate of {worst[0]} ({100 * worst[1]:.3f}%) is {ratio} that of "
                f"{best[0]} ({100 * best[1]:.3f}%). A threshold that is safe for one group is not for the other: "
                "raise it, or add human review, before using this model on people like those in the worst group."
            )
    return warnings


def routes(console: Console) -> list[Route]:
    def accuracy(request: Request, session: Session, _: dict[str, str]) -> Response:
        return console.render(request, "accuracy.html", session, reports=reports(console.reports_dir),
                              directory=console.reports_dir)

    def plot(request: Request, session: Session, _: dict[str, str]) -> Response:
        folder, name = request.path_params["folder"], request.path_params["name"]
        path = console.reports_dir / folder / name
        if not _PLOT.fullmatch(name) or not re.fullmatch(r"[A-Za-z0-9_.-]+", folder) or folder.startswith(".") \
                or not path.is_file() or not (console.reports_dir / folder / "report.json").is_file():
            return console.render(request, "refused.html", session, 404, error="NotFound", message="No such plot.")
        return FileResponse(path, media_type="image/png", headers={**SECURITY_HEADERS, "Cache-Control": "private, max-age=300"})

    return [Route("/accuracy", console.page("auditor", accuracy)),
            Route("/reports/{folder:str}/{name:str}", console.page("auditor", plot))]
