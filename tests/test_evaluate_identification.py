"""`facegate evaluate identification`: the 1:N statistics on constructed searches with known
answers, and the command end to end through a real collection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facegate.cli.main import cli
from facegate.evaluate.identification import Search, identification_rates


def searches() -> list[Search]:
    mated = [
        Search("m1", True, 1, 99.5, 99.5, None),
        Search("m2", True, 1, 85.0, 85.0, None),
        Search("m3", True, 2, 99.2, 99.7, None),
        Search("m4", True, 0, 0.0, 60.0, None),  # mate not among the candidates
        Search("m5", True, 6, 40.0, 90.0, None),  # mate at rank 6
        Search("m6", True, 0, 0.0, 0.0, "InvalidParameterException"),  # no face in the probe
    ]
    non_mated = [Search(f"n{i}", False, 0, 0.0, float(i), None) for i in range(100)]  # best candidates 0..99
    return mated + non_mated + [Search("n-failed", False, 0, 0.0, 0.0, "InvalidParameterException")]


def test_rank_rates_count_only_mates_at_or_above_the_rank():
    rates = identification_rates(searches())
    assert rates["mated_searches"] == 6 and rates["non_mated_searches"] == 101
    assert rates["rank1"]["rate"] == pytest.approx(2 / 6) and rates["rank1"]["rate_count"] == 2
    assert rates["rank5"]["rate"] == pytest.approx(3 / 6)
    low, high = rates["rank1"]["rate_interval"]
    assert low < 2 / 6 < high


def test_fnir_at_fpir_uses_the_threshold_the_non_mated_searches_allow():
    rates = identification_rates(searches())
    at_one_percent = rates["fnir_at_fpir"]["0.01"]
    # 101 non-mated searches allow one false positive: the best candidate at 99 stays above.
    assert 98 < at_one_percent["similarity"] <= 99
    assert at_one_percent["fpir"] == pytest.approx(1 / 101)
    assert at_one_percent["fnir"] == pytest.approx(4 / 6)  # 85, not returned, 40, failed
    assert at_one_percent["small_sample"] is True  # fewer than 300 non-mated searches
    at_one_per_mille = rates["fnir_at_fpir"]["0.001"]
    assert 99 < at_one_per_mille["similarity"] < 99.2 and at_one_per_mille["fpir"] == 0


def test_fixed_similarities_report_fpir_and_fnir_with_failures_as_misses():
    at = identification_rates(searches())["at_similarity"]
    assert at["80"]["fpir"] == pytest.approx(20 / 101) and at["80"]["fnir"] == pytest.approx(3 / 6)
    assert at["90"]["fpir"] == pytest.approx(10 / 101) and at["90"]["fnir"] == pytest.approx(4 / 6)
    assert at["99"]["fpir"] == pytest.approx(1 / 101) and at["99"]["fnir_count"] == 4


def test_no_non_mated_searches_means_no_fnir_at_fpir():
    rates = identification_rates([s for s in searches() if s.mated])
    assert rates["fnir_at_fpir"] == {"0.01": None, "0.001": None}
    assert rates["at_similarity"]["80"]["fpir"] is None


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, faces_dir) -> Path:
    """Four CelebA people with four photos each (linked, never copied), and one folder
    whose only photo has no face, so it cannot be enrolled."""
    root = tmp_path_factory.mktemp("gallery")
    people = sorted(p for p in (faces_dir / "celeba_matush97").iterdir() if p.is_dir() and not p.name.startswith("_"))[:4]
    for person in people:
        (root / person.name).mkdir()
        for photo in sorted(person.glob("*.jpg"))[:4]:
            (root / person.name / photo.name).symlink_to(photo)
    (root / "nobody").mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "nobody" / "noise.png")
    return root


def test_identification_runs_through_a_collection_and_lists_every_failure(gallery, faces_dir, tmp_path):
    distractors = tmp_path / "distractors"
    for name in ("Colin_Powell", "Tony_Blair"):
        (distractors / name).mkdir(parents=True)
        for number in (1, 2):
            (distractors / name / f"{name}_{number:04d}.jpg").symlink_to(faces_dir / "lfw_erstrong" / name / f"{name}_{number:04d}.jpg")
    result = CliRunner().invoke(cli, [
        "evaluate", "identification", str(gallery), str(gallery), "--distractors", str(distractors),
        "--json", "--out", str(tmp_path / "report"),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["gallery_identities"] == 5 and report["enrolled"] == 4
    assert report["unenrollable_identities"] == ["nobody"]
    assert report["mated_searches"] == 4 * 3
    assert report["non_mated_searches"] == 4 + 1  # the distractors, and the unenrollable folder's photo
    assert [Path(f["path"]).name for f in report["failed_searches"]] == ["noise.png"]
    assert report["failed_searches"][0]["error"] == "InvalidParameterException"
    assert report["rank1"]["rate"] >= 0.75 and report["rank5"]["rate"] >= report["rank1"]["rate"]
    assert set(report["fnir_at_fpir"]) == {"0.01", "0.001"} and set(report["at_similarity"]) == {"80", "90", "95", "99"}
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"report.json", "report.md", "report.html", "det.png", "scores.png"} <= written


def test_an_empty_gallery_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["evaluate", "identification", str(tmp_path), str(tmp_path)])
    assert result.exit_code != 0 and "one folder per identity" in result.output
