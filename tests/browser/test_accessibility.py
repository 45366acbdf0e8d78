"""axe-core (vendored, pinned) over every page of the app in Chromium, in the states a user sees:
no serious or critical WCAG 2.1 A/AA or best-practice violation anywhere."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tests.app.test_method_rounds import _label_suggestions
from tests.browser.test_ui import _page, _wait_until
from tests.conftest import LiveService, wait_for_round
from tests.factories import digits_project

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def _axe_source() -> str:
    source = AXE.read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256, "the vendored axe-core is not the pinned 4.14.1"
    return source.decode()


def _audit(page, where: str, found: dict[str, list[str]]) -> None:  # type: ignore[no-untyped-def]
    # Through DevTools, not a <script>: the app's CSP (script-src 'self') rightly refuses inline code.
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    result = page.evaluate(
        "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", TAGS
    )
    assert result["testEngine"]["version"] == "4.14.1"
    found[where] = [
        f"{v['id']} ({v['impact']}): {n['target']} {n['failureSummary']}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
        for n in v["nodes"]
    ]


def test_every_page_has_no_serious_or_critical_violations(browser, sqlite_service: LiveService) -> None:  # type: ignore[no-untyped-def]
    eng_id, eng = sqlite_service.new_user("engineer")
    ann_id, ann = sqlite_service.new_user("annotator")
    engineer = sqlite_service.client(eng)
    pid, names = digits_project(
        sqlite_service.admin, members=[eng_id, ann_id], pool=np.arange(2600, 2720), validation=np.arange(2800, 2830)
    )
    first = engineer.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 8}).json()
    assert wait_for_round(engineer, first["id"])["status"] == "ready"
    _label_suggestions(engineer, sqlite_service, first["id"], names)
    second = engineer.post(f"/projects/{pid}/rounds", json={"strategy": "margin", "batch_size": 4}).json()
    assert wait_for_round(engineer, second["id"])["status"] == "ready"
    found: dict[str, list[str]] = {}

    context = browser.new_context(viewport={"width": 1366, "height": 768})
    signed_out = context.new_page()
    signed_out.goto(sqlite_service.base_url + "/#/login")
    signed_out.wait_for_selector("h1:has-text('Sign in')")
    _audit(signed_out, "sign-in", found)
    context.close()

    annotator = _page(browser, sqlite_service, ann)
    _audit(annotator, "projects", found)
    annotator.goto(f"{sqlite_service.base_url}/#/label/{pid}")
    annotator.wait_for_selector(".progress-text:has-text('0 / 4, round 2')")
    _wait_until(annotator, "(img => img.complete && img.naturalWidth > 0)(document.querySelector('img.subject'))")
    _audit(annotator, "labelling", found)
    annotator.keyboard.press("g")
    annotator.wait_for_selector(".grid .cell")
    _audit(annotator, "labelling, grid mode", found)
    for _ in range(4):
        annotator.keyboard.press(" ")
        annotator.keyboard.press("ArrowRight")
    annotator.keyboard.press("3")
    annotator.wait_for_selector(".empty:has-text('Nothing to label right now')")
    _audit(annotator, "labelling, nothing left", found)
    annotator.goto(f"{sqlite_service.base_url}/#/admin")
    annotator.wait_for_selector("h1:has-text('Admins only')")
    _audit(annotator, "admin page refused", found)
    annotator.goto(f"{sqlite_service.base_url}/#/dashboard/{pid}")
    annotator.wait_for_selector(".latent-map svg")
    _audit(annotator, "dashboard (annotator)", found)

    page = _page(browser, sqlite_service, eng)
    page.goto(f"{sqlite_service.base_url}/#/dashboard/{pid}")
    page.wait_for_selector(".latent-map[data-layout=tsne]", timeout=90_000)
    page.wait_for_selector("table.confusion")
    page.wait_for_selector(".sim-form input[name=sim-strategy]", state="attached")
    _audit(page, "dashboard", found)
    page.select_option("#map-colour", "prediction")
    page.wait_for_selector(".legend[aria-label='Colour legend (prediction)']")
    page.locator(".legend-item:not([disabled])").first.click()
    page.wait_for_selector(".map-selection .tile")
    _audit(page, "dashboard, map selection", found)
    page.locator(".map-selection .tile").first.click()
    page.wait_for_selector("dialog.image-viewer[open]")
    _audit(page, "dashboard, image viewer", found)

    admin = _page(browser, sqlite_service, sqlite_service.admin_token)
    admin.goto(f"{sqlite_service.base_url}/#/admin")
    admin.wait_for_selector("h1:has-text('Admin')")
    admin.wait_for_selector("table")
    _audit(admin, "admin", found)

    assert len(found) == 11
    issues = [f"{where}: {issue}" for where, listed in found.items() for issue in listed]
    assert not issues, "\n".join(issues)
