"""`facegate evaluate verification` and `demographics`: their JSON contracts and report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from facegate.cli.main import cli
from facegate.engine.calibration import SimilarityCalibration
from facegate.engine.face_models import DEFAULT_FACE_MODEL, FACE_MODELS
from tests.support.photos import lfw_photo

PEOPLE = ["Colin_Powell", "Tony_Blair", "Hugo_Chavez", "David_Beckham", "Silvio_Berlusconi", "Jennifer_Capriati"]


@pytest.fixture(scope="module")
def small_lfw(tmp_path_factory, faces_dir) -> Path:
    """Six people, three photos each, linked (never copied) from the shared photos."""
    root = tmp_path_factory.mktemp("lfw")
    for name in PEOPLE:
        (root / name).mkdir()
        for number in (1, 2, 3):
            (root / name / f"{name}_{number:04d}.jpg").symlink_to(lfw_photo(faces_dir, name, number))
    (root / "_labels").mkdir()  # label folders are not people
    return root


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_verification_json_reports_rates_with_intervals_and_every_pair(small_lfw, tmp_path):
    report = run("evaluate", "verification", str(small_lfw), "--json", "--out", str(tmp_path / "report"))
    assert report["photos"] == 18 and report["identities"] == 6
    assert report["genuine_pairs"] == 6 * 3 and report["impostor_pairs"] == 18 * 17 // 2 - 18
    assert set(report["at_similarity"]) == {"80", "90", "95", "99"}
    for rates in report["at_similarity"].values():
        assert rates["fmr_interval"][0] <= rates["fmr"] <= rates["fmr_interval"][1]
        assert rates["fnmr_interval"][0] <= rates["fnmr"] <= rates["fnmr_interval"][1]
    assert 0 <= report["eer"] < 0.2 and report["detection_failures"] == len(report["undetected_photos"])
    assert set(report["similarity_for_fmr"]) == {"0.001", "0.0001"}
    assert report["similarity_for_fmr"]["0.001"]["resolvable"] is False  # 135 impostor pairs cannot resolve 1e-3
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"report.json", "report.md", "report.html", "det.png", "roc.png", "scores.png"} <= written
    assert report["model_version"] in (tmp_path / "report" / "report.md").read_text()


def test_demographics_json_has_a_group_entry_per_attribute_value(small_lfw, tmp_path):
    labels = tmp_path / "labels.tsv"
    rows = ["path\tidentity\tgender\trace"]
    for i, name in enumerate(PEOPLE):
        for number in (1, 2, 3):
            rows.append(f"{small_lfw.name}/{name}/{name}_{number:04d}.jpg\t{name}\t{'F' if name == 'Jennifer_Capriati' else 'M'}\t{'A' if i % 2 else 'B'}")
    labels.write_text("\n".join(rows) + "\n")
    labels_here = small_lfw.parent / "labels.tsv"
    labels_here.write_text(labels.read_text())
    report = run("evaluate", "demographics", str(small_lfw), str(labels_here), "--json", "--out", str(tmp_path / "demo"))
    groups = {(g["attribute"], g["group"]): g for g in report["groups"]}
    assert set(groups) == {("gender", "F"), ("gender", "M"), ("race", "A"), ("race", "B"), ("race×gender", "A×M"), ("race×gender", "B×M"), ("race×gender", "A×F")}
    for g in report["groups"]:
        assert {"attribute", "group", "n_photos", "detection_failure_rate", "fmr", "fnmr", "fmr_ratio_to_lowest", "small_sample"} <= set(g)
        assert g["small_sample"] is True  # at most six people in any group
    women = groups[("gender", "F")]
    assert women["n_photos"] == 3 and women["n_identities"] == 1
    assert women["fmr"] is None and women["impostor_pairs"] == 0  # one woman: no within-group impostors
    assert groups[("gender", "M")]["fnmr"] is not None and groups[("gender", "M")]["genuine_pairs"] == 15
    assert report["calibration"]["slope"] > 0 and "calibration" in (tmp_path / "demo" / "report.md").read_text()
    assert (tmp_path / "demo" / "det_race_x_gender.png").is_file() and (tmp_path / "demo" / "fmr_race_x_gender.png").is_file()


def test_one_photo_per_person_gives_fmr_but_no_fnmr(faces_dir, tmp_path):
    source = sorted((faces_dir / "utkface_mattans" / "Black_F").glob("*.jpg"))[:8] + sorted((faces_dir / "utkface_mattans" / "White_M").glob("*.jpg"))[:8]
    data = tmp_path / "crops"
    data.mkdir()
    rows = ["path\tgender\trace"]
    for photo in source:
        (data / photo.name).symlink_to(photo)
        cell = photo.parent.name.split("_")
        rows.append(f"crops/{photo.name}\t{cell[1]}\t{cell[0]}")
    (tmp_path / "labels.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "MANIFEST.tsv").write_text("path\tidentity\n" + "".join(f"crops/{p.name}\t{p.name}\n" for p in source))
    report = run("evaluate", "demographics", str(data), str(tmp_path / "labels.tsv"), "--json")
    assert report["identities"] == 16
    assert all(g["fnmr"] is None and g["genuine_pairs"] == 0 for g in report["groups"])
    assert all(g["impostor_pairs"] == 8 * 7 // 2 for g in report["groups"] if g["attribute"] == "race")


def test_verification_fits_a_calibration_that_every_command_can_then_use(small_lfw, tmp_path, monkeypatch):
    fitted = tmp_path / "calibration.json"
    report = run("evaluate", "verification", str(small_lfw), "--json", "--fit-calibration", str(fitted))
    written = json.loads(fitted.read_text())
    model = FACE_MODELS[DEFAULT_FACE_MODEL]
    assert written["slope"] == report["calibration"]["slope"] != SimilarityCalibration.load(model.name, model.version).slope
    assert written["provenance"]["fitted_on"] == str(small_lfw) and written["provenance"]["genuine_pairs"] == 18
    assert written["provenance"]["measured_on_fit_pairs"]["at_similarity"] == report["at_similarity"]
    assert written["provenance"]["model_version"] == model.version
    monkeypatch.setenv("FACEGATE_CALIBRATION", str(fitted))
    assert SimilarityCalibration.load(model.name, model.version).midpoint == written["midpoint"]
    other = FACE_MODELS["dlib"]  # a calibration only applies to the model it was fitted on
    assert SimilarityCalibration.load(other.name, other.version).midpoint != written["midpoint"]
