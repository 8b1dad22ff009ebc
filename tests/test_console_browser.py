"""The oversight console in a real browser (Debian's chromium through Playwright), against a
real server that answered real boto3 identifications of real photos.

In order: log in, filter the audit log to one case and open a record, export it and compare
with `facegate audit export`, confirm and reject matches in the review queue and find both
decisions in the chain, toggle a pack as admin and find its audit entry, create a key and see
its secret once, see an auditor refused a change (the server refuses it, whatever the page
shows), see forged forms refused, see failed logins throttled, and log out. Every page is
checked at 1280 and 390 px for sideways scrolling and visible keyboard focus, and kept as a
screenshot in test-artifacts/console/.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from facegate.bench.local_server import FACEGATE
from facegate.governance import console_accounts
from facegate.governance.console_accounts import MAX_FAILURES_PER_ACCOUNT
from facegate.governance.identity import create_organization
from facegate.governance.keys import NewAccessKey, create_access_key
from facegate.governance.policy import Policies
from tests.support.browser import chromium, screenshot
from tests.support.console import CHEAP_HASHER, PASSWORD
from tests.support.photos import lfw_photo
from tests.support.server import RunningServer, running_server

pytestmark = pytest.mark.slow

CASE = "CASE-2026-0042"
PAGES = ["/console/", "/console/audit", "/console/review", "/console/policies", "/console/organizations",
         "/console/collections", "/console/accuracy"]


@dataclass
class Site:
    server: RunningServer
    data_dir: Path
    key: NewAccessKey
    browser: object

    @property
    def base(self) -> str:
        return self.server.endpoint

    def page(self, width: int = 1280):  # type: ignore[no-untyped-def]
        context = self.browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)  # type: ignore[attr-defined]
        return context.new_page()

    def logged_in(self, account: str, width: int = 1280):  # type: ignore[no-untyped-def]
        page = self.page(width)
        page.goto(f"{self.base}/console/")
        page.fill("#account", account)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{self.base}/console/")
        return page


def _search(server: RunningServer, key: NewAccessKey, photo: Path, case: str) -> dict:
    client = server.client(key)

    def add_case_reference(request, **_):  # type: ignore[no-untyped-def]
        request.headers["X-Facegate-Case-Ref"] = case  # before signing: the header is signed

    client.meta.events.register("before-sign.rekognition.*", add_case_reference)
    return client.search_faces_by_image(CollectionId="suspects", Image={"Bytes": photo.read_bytes()}, FaceMatchThreshold=99)


@pytest.fixture(scope="module")
def site(tmp_path_factory, faces_dir) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("console") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(console_accounts, "_hasher", CHEAP_HASHER)
        with running_server(data_dir) as server:
            store = server.facegate.store
            for name, role in [("alice", "admin"), ("audrey", "auditor"), ("rita", "reviewer"), ("lou", "auditor")]:
                console_accounts.add_account(store, name, role, PASSWORD)
            create_organization(store, "metro", "law_enforcement")
            key = create_access_key(store, server.facegate.secrets, "amber", "metro", "missing_children")
            client = server.client(key)
            client.create_collection(CollectionId="suspects")
            for name, external in [("Colin_Powell", "powell"), ("Tony_Blair", "blair")]:
                client.index_faces(CollectionId="suspects", Image={"Bytes": lfw_photo(faces_dir, name).read_bytes()},
                                   ExternalImageId=external)
            for name in ("Colin_Powell", "Tony_Blair"):
                assert _search(server, key, lfw_photo(faces_dir, name), CASE)["FaceMatches"]
            _search(server, key, lfw_photo(faces_dir, "Colin_Powell"), "CASE-OTHER")
            with chromium() as browser:
                yield Site(server, data_dir, key, browser)


def _cli(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FACEGATE, *args, "--data-dir", str(site.data_dir)], capture_output=True, text=True)


def test_log_in_filter_the_audit_to_one_case_and_open_a_record(site):
    page = site.logged_in("audrey")
    page.click("nav >> text=Audit log")
    page.fill("#f-case_reference", CASE)
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"case_reference="))
    rows = page.locator("table.records tbody tr")
    assert rows.count() == 2
    assert all(CASE in rows.nth(i).inner_text() for i in range(2))
    assert "pending" in rows.nth(0).inner_text()
    screenshot(page, "audit-filtered-to-a-case")
    rows.nth(1).locator("a").first.click()
    page.wait_for_url(re.compile(r"/console/audit/\d+$"))
    body = page.inner_text("main")
    assert "SearchFacesByImage" in body and "Matches" in body and "powell" in body and CASE in body
    assert "Deciding policies" in body and "@id(" in body and "not recorded" not in body  # the gate kept each similarity
    screenshot(page, "record")
    page.click(f"text={CASE}")
    page.wait_for_url(re.compile(r"/console/case\?ref="))
    assert page.locator("table.records tbody tr").count() == 2


def test_the_audit_export_is_byte_for_byte_the_clis(site, tmp_path):
    page = site.logged_in("audrey")
    page.goto(f"{site.base}/console/audit")
    for fmt in ("jsonl", "csv"):
        with page.expect_download() as download:
            page.click(f"a[href='/console/audit/export.{fmt}']")
        saved = tmp_path / f"audit.{fmt}"
        download.value.save_as(saved)
        cli = subprocess.run([FACEGATE, "audit", "export", "--format", fmt, "--data-dir", str(site.data_dir)], capture_output=True)
        assert cli.returncode == 0 and saved.read_bytes() == cli.stdout


def test_confirm_and_reject_matches_and_see_both_in_the_chain(site):
    page = site.logged_in("rita")
    page.goto(f"{site.base}/console/review")
    screenshot(page, "review-queue")
    decided = []
    for outcome in ("confirmed", "rejected"):
        page.goto(f"{site.base}/console/review")
        page.locator("main table a", has_text=re.compile(r"^Review$")).first.click()
        page.wait_for_url(re.compile(r"/console/review/\d+$"))
        decided.append(int(page.url.rsplit("/", 1)[1]))
        if outcome == "confirmed":
            screenshot(page, "review-item")
        for radio in page.locator(f"input[type=radio][value={outcome}]").all():
            radio.check()
        page.fill("#reason", f"{outcome} after comparing ears and hairline")
        page.click("form.stack button[type=submit]")
        page.wait_for_url(re.compile(r"/console/review\?done="))
        assert outcome in page.inner_text("main")
    page.goto(f"{site.base}/console/audit?operation=facegate:ReviewDecision")
    rows = page.locator("table.records tbody tr")
    assert rows.count() == 2
    for seq, outcome in zip(decided, ("confirmed", "rejected")):
        page.goto(f"{site.base}/console/audit/{seq}")
        assert outcome in page.inner_text("main")
    verified = _cli(site, "audit", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("OK:"), verified.stdout + verified.stderr


def test_an_admin_toggles_a_pack_after_confirming_and_sees_the_audit_entry(site):
    page = site.logged_in("alice")
    page.goto(f"{site.base}/console/policies")
    page.click("a[href='/console/policies/eu-ai-act-art5/confirm']")
    page.wait_for_url(re.compile(r"/confirm$"))
    screenshot(page, "policy-confirmation")
    page.click("text=Yes, turn on eu-ai-act-art5")
    page.wait_for_url(re.compile(r"/console/policies\?done="))
    assert "eu-ai-act-art5 is now on" in page.inner_text("main")
    assert Policies(site.server.facegate.store).pack("eu-ai-act-art5").enabled
    page.goto(f"{site.base}/console/audit?operation=facegate:PolicyEnable")
    row = page.locator("table.records tbody tr").first.inner_text()
    assert "console:alice" in row
    page.goto(f"{site.base}/console/policies/eu-ai-act-art5/confirm")
    page.click("text=Yes, turn off eu-ai-act-art5")
    page.wait_for_url(re.compile(r"/console/policies\?done="))
    assert not Policies(site.server.facegate.store).pack("eu-ai-act-art5").enabled


def test_an_admin_creates_a_key_whose_secret_is_shown_once_and_works(site):
    page = site.logged_in("alice")
    page.goto(f"{site.base}/console/organizations")
    page.select_option("#key-org", "metro")
    page.fill("#key-purpose", "missing_children")
    page.fill("#key-name", "amber-alerts")
    page.click("text=Create key")
    key_id, secret = page.inner_text("#new-key-id"), page.inner_text("#new-key-secret")
    screenshot(page, "key-created")
    page.goto(f"{site.base}/console/organizations")
    listing = page.content()
    assert key_id in listing and secret not in listing
    collections = site.server.client(NewAccessKey(key_id, secret)).list_collections()
    assert collections["CollectionIds"] == ["suspects"]


def test_an_auditor_is_refused_a_change_by_the_server(site):
    page = site.logged_in("audrey")
    page.goto(f"{site.base}/console/policies")
    assert page.locator("text=Turn on…").count() == 0  # courtesy: the server check is what counts
    response = page.goto(f"{site.base}/console/policies/eu-ai-act-art5/confirm")
    assert response.status == 403 and "ConsoleAccessDenied" in page.inner_text("main")
    screenshot(page, "auditor-refused")
    token = page.get_attribute("form.logout input[name=csrf_token]", "value")
    status = page.evaluate(
        """async (token) => (await fetch('/console/policies/eu-ai-act-art5', {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'},
             body: new URLSearchParams({csrf_token: token, enable: '1', confirm: 'yes'})})).status""", token)
    assert status == 403
    assert not Policies(site.server.facegate.store).pack("eu-ai-act-art5").enabled


def test_forged_forms_are_refused(site):
    page = site.logged_in("alice")
    status = page.evaluate(
        """async () => (await fetch('/console/policies/eu-ai-act-art5', {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'},
             body: new URLSearchParams({csrf_token: 'forged', enable: '1', confirm: 'yes'})})).status""")
    assert status == 403
    forged = f"""<form method=post action="{site.base}/console/policies/eu-ai-act-art5">
        <input name=csrf_token value=guessed><input name=enable value=1><input name=confirm value=yes><button id=go>go</button></form>"""
    page.set_content(forged)  # a form injected into a console page: the token is what stops it
    with page.expect_navigation():
        page.click("#go")
    assert "ConsoleCsrfRefused" in page.inner_text("main")
    screenshot(page, "csrf-refused")
    page.goto("about:blank")  # another site's form: SameSite=Strict keeps the session cookie off it
    page.set_content(forged)
    with page.expect_navigation():
        page.click("#go")
    assert "Your session has ended" in page.inner_text("main")
    assert not Policies(site.server.facegate.store).pack("eu-ai-act-art5").enabled


def test_failed_logins_are_throttled_and_audited(site):
    page = site.page()
    page.goto(f"{site.base}/console/login")
    for _ in range(MAX_FAILURES_PER_ACCOUNT):
        page.fill("#account", "lou")
        page.fill("#password", "a wrong password, typed again")
        page.click("button[type=submit]")
        assert "wrong account name or password" in page.inner_text("main")
    page.fill("#account", "lou")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    assert "too many failed logins" in page.inner_text("main")
    screenshot(page, "login-throttled")
    shown = _cli(site, "audit", "show", "--op", "facegate:ConsoleLoginFailed").stdout
    assert shown.count('"account": "lou"') == MAX_FAILURES_PER_ACCOUNT


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_fits_its_width_shows_keyboard_focus_and_is_kept_as_a_screenshot(site, width):
    page = site.logged_in("alice", width)
    for path in PAGES:
        response = page.goto(f"{site.base}{path}")
        assert response.status == 200, path
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at {width} px"
        assert page.locator("table th").count() == 0 or page.locator("table thead th").count() > 0
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), f"{path}: keyboard focus is not visible"
        screenshot(page, f"{path.strip('/').replace('/', '-') or 'console'}-{width}")


def test_logging_out_ends_the_session(site):
    page = site.logged_in("audrey")
    page.click("text=Log out")
    page.wait_for_url(re.compile(r"/console/login$"))
    page.goto(f"{site.base}/console/audit")
    assert "/console/login" in page.url
