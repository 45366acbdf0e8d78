"""The web UI in a real browser (Debian's Chromium driven by Playwright) against a live server and
worker. Screenshots of each page land in test-artifacts/screenshots/."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.browser.conftest import SHOTS
from tests.conftest import LiveService, wait_for_round
from tests.factories import create_project, digits_project, digits_zip, mnist, upload


@pytest.fixture(scope="module")
def world(sqlite_service: LiveService) -> dict:
    eng_id, eng = sqlite_service.new_user("engineer", "ui-engineer")
    ann_id, ann = sqlite_service.new_user("annotator", "ui-annotator")
    project = create_project(sqlite_service.admin, members=[eng_id, ann_id], vae_epochs=5, latent_dim=8)
    pid = project["id"]
    upload(sqlite_service.admin, pid, [("pool.zip", digits_zip(np.arange(600, 700), with_labels=False))])
    upload(
        sqlite_service.admin, pid, [("val.zip", digits_zip(np.arange(800, 840), with_labels=True))], split="validation"
    )
    created = sqlite_service.client(eng).post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 6})
    assert wait_for_round(sqlite_service.client(eng), created.json()["id"])["status"] == "ready"
    names = {
        i["id"]: i["original_name"]
        for i in sqlite_service.admin.get(f"/projects/{pid}/images", params={"per_page": 500}).json()["data"]
    }
    return {"pid": pid, "eng": eng, "ann": ann, "names": names}


def _page(browser, service: LiveService, token: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(service.base_url + "/#/login")
    page.get_by_label("Access token").fill(token)
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:has-text('Projects')")
    return page


def _annotations(client, project_id: int) -> list[dict]:  # type: ignore[no-untyped-def]
    """The project's exported labels that annotators gave (not those that came with uploads)."""
    rows = client.get(f"/projects/{project_id}/export", params={"format": "json"}).json()["data"]
    return [r for r in rows if r["label_source"] == "annotation"]


def _retry(check, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{check.__name__} never held"
        time.sleep(0.3)


def _wait_until(page, expression: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    # wait_for_function evaluates its predicate with eval inside the page, which the app's CSP
    # (script-src 'self', no unsafe-eval) rightly refuses; page.evaluate goes through DevTools instead.
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def test_annotator_labels_a_batch_with_the_keyboard_alone(browser, sqlite_service: LiveService, world: dict) -> None:  # type: ignore[no-untyped-def]
    page = _page(browser, sqlite_service, world["ann"])
    page.screenshot(path=str(SHOTS / "projects.png"))
    page.goto(f"{sqlite_service.base_url}/#/label/{world['pid']}")
    page.wait_for_selector(".progress-text:has-text('0 / 6, round 1')")
    _wait_until(page, "(img => img.complete && img.naturalWidth > 0)(document.querySelector('img.subject'))")
    page.screenshot(path=str(SHOTS / "labelling.png"))
    digits = mnist()
    expected: dict[int, str] = {}
    for step in range(6):
        image_id = int(page.locator("img.subject").get_attribute("data-id"))
        index = int(world["names"][image_id].split("-")[1].split(".")[0])
        label = str(digits.labels[index])
        # Single-character class names are their own keys: "1" labels a one.
        assert page.locator(f"button.class:has-text('{label}') kbd").inner_text() == label
        page.keyboard.press(label)
        expected[image_id] = label
        page.wait_for_selector(f".progress-text:has-text('{step + 1} / 6, round 1')")
    page.wait_for_selector(".empty:has-text('Nothing to label right now')")
    page.screenshot(path=str(SHOTS / "labelling-done.png"))
    client = sqlite_service.client(world["eng"])
    rows = _annotations(client, world["pid"])
    assert {r["image_id"]: r["label"] for r in rows} == expected
    assert {r["annotator"] for r in rows} == {"ui-annotator"}

    # Z undoes the last label: it is gone from the database and the image is back on screen.
    page.keyboard.press("z")
    page.wait_for_selector(".progress-text:has-text('5 / 6, round 1')")
    rows = _annotations(client, world["pid"])
    assert len(rows) == 5
    undone = int(page.locator("img.subject").get_attribute("data-id"))
    assert undone in expected and undone not in {r["image_id"] for r in rows}
    # A reload keeps the annotator's leased item.
    page.reload()
    page.wait_for_selector(f"img.subject[data-id='{undone}']")
    page.keyboard.press(expected[undone])
    page.wait_for_selector(".progress-text:has-text('6 / 6, round 1')")


def test_engineer_triggers_a_round_and_sees_it_finish(browser, sqlite_service: LiveService, world: dict) -> None:  # type: ignore[no-untyped-def]
    page = _page(browser, sqlite_service, world["eng"])
    page.goto(f"{sqlite_service.base_url}/#/dashboard/{world['pid']}")
    page.wait_for_selector("table.rounds tbody tr")
    page.wait_for_selector("#strategy option[value='entropy']", state="attached")
    # The params box shows what the chosen strategy takes; a parameter it does not take is refused by
    # name before any round is queued.
    rows = page.locator("table.rounds tbody tr").count()
    page.select_option("#strategy", "snn")
    assert '"neighbours":30' in (page.get_attribute("#params", "placeholder") or "")
    page.fill("#params", '{"neighbors": 30}')
    page.click("button:has-text('Start round')")
    page.wait_for_selector("#error:has-text(\"unknown parameter 'neighbors'\")")
    assert page.locator("table.rounds tbody tr").count() == rows
    page.fill("#params", "")
    page.select_option("#strategy", "entropy")
    assert page.get_attribute("#params", "placeholder") == "this strategy takes no params"
    page.fill("#batch", "5")
    # Run alone (without the annotator test before it), round 1 still has pending items: the page asks
    # before starting anyway (close_open), and the engineer agrees.
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Start round')")
    page.wait_for_selector("table.rounds tbody tr:first-child td:first-child:has-text('2')")
    # While it runs, the row shows a live status and a progress bar with the phase.
    running = page.locator("table.rounds tbody tr:first-child")
    assert running.get_attribute("data-status") in ("queued", "training", "selecting", "ready")
    assert page.locator("table.rounds tbody tr:first-child [role=progressbar]").count() == 1
    page.wait_for_selector("table.rounds tbody tr[data-status='ready']:first-child", timeout=120_000)
    # The learning curve has the new round's point and the latent map shows the new suggestions.
    page.wait_for_selector(".curve svg circle")
    page.wait_for_selector(".latent-map circle.suggested")
    assert page.locator(".latent-map circle.labelled").count() >= 6
    # The header counts agree with the map's legend (both read now, not at page load).
    labelled = page.locator(".latent-map circle.labelled").count()
    page.wait_for_selector(f"p.summary:has-text('{labelled} labelled')")
    page.wait_for_selector(f".legend li:has-text('labelled ({labelled})')")
    # The round's detail says which space it selected in (the representation, or what stood in).
    page.wait_for_selector("p.round-space:has-text('Selected in: ')")
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

    # The dashboard may redraw the map once more as round statuses settle; each check retries then.
    def tip_on_hover() -> bool:
        page.locator(".latent-map circle.labelled").first.hover()
        return page.locator(".latent-map .tip:not([hidden]) img").count() == 1

    _retry(tip_on_hover)
    # The map is one Tab stop; arrow keys walk its labelled and suggested points with the tooltip and a
    # spoken description, and the circles are hidden from assistive technology.
    assert page.locator(".latent-map [tabindex]").count() == 1
    assert page.locator(".latent-map circle:not([aria-hidden=true])").count() == 0

    def keyboard_walk() -> bool:
        page.locator(".latent-map svg").focus()
        page.keyboard.press("Home")  # not a map key: leaves the cursor where it is
        page.keyboard.press("ArrowRight")
        spoken = page.locator(".latent-map [aria-live]").inner_text()
        shown = page.locator(".latent-map .tip:not([hidden])").count() == 1
        return shown and page.locator(".latent-map circle.cursor").count() == 1 and " of " in spoken

    _retry(keyboard_walk)
    before = page.locator(".latent-map [aria-live]").inner_text()
    page.keyboard.press("ArrowRight")
    assert page.locator(".latent-map [aria-live]").inner_text() != before
    assert "ready 100%" in page.locator("table.rounds tbody tr:first-child").inner_text()
    # The new batch is what annotators now get.
    annotator = _page(browser, sqlite_service, world["ann"])
    annotator.goto(f"{sqlite_service.base_url}/#/label/{world['pid']}")
    annotator.wait_for_selector(".progress-text:has-text('0 / 5, round 2')")
    # A third round replaces round 2 while the annotator's page is open: the page follows it by itself
    # and says so, and the class keys label in the new round.
    engineer = sqlite_service.client(world["eng"])
    refused = engineer.post(f"/projects/{world['pid']}/rounds", json={"strategy": "random", "batch_size": 4})
    assert refused.status_code == 409 and "close_open" in refused.json()["detail"]
    body = {"strategy": "random", "batch_size": 4, "close_open": True}
    third = engineer.post(f"/projects/{world['pid']}/rounds", json=body).json()["id"]
    assert wait_for_round(engineer, third)["status"] == "ready"
    annotator.wait_for_selector(".notice:has-text('Round 3 is open now')", timeout=20_000)
    annotator.wait_for_selector(".progress-text:has-text('0 / 4, round 3')")
    annotator.keyboard.press("7")
    annotator.wait_for_selector(".progress-text:has-text('1 / 4, round 3')")


def test_admin_uploads_a_zip_and_sees_the_report(browser, sqlite_service: LiveService, world: dict) -> None:  # type: ignore[no-untyped-def]
    import io
    import zipfile

    page = _page(browser, sqlite_service, sqlite_service.admin_token)
    page.goto(f"{sqlite_service.base_url}/#/admin")
    page.wait_for_selector("h2:has-text('Upload images')")
    page.select_option("#upload-project", str(world["pid"]))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("new-1.png", _png(1))
        zf.writestr("new-2.png", _png(2))
        zf.writestr("../escape.png", _png(3))
        zf.writestr("readme.txt", b"not an image")
    # A labels CSV row that names no uploaded file is reported, not silently dropped.
    page.set_input_files(
        "#upload-labels",
        files=[{"name": "labels.csv", "mimeType": "text/csv", "buffer": b"filename,label\nnew-1.png,1\nghost.png,2\n"}],
    )
    page.set_input_files(
        "#upload-files", files=[{"name": "batch.zip", "mimeType": "application/zip", "buffer": archive.getvalue()}]
    )
    page.wait_for_selector(".report-summary:has-text('2 accepted')")
    page.wait_for_selector(".report-unused:has-text('ghost.png')")
    assert "contains .." in page.locator("table.rejected").inner_text()
    assert page.locator("table.rejected tbody tr").count() == 2
    page.screenshot(path=str(SHOTS / "admin-upload.png"), full_page=True)


def _png(seed: int) -> bytes:
    from tests.factories import png

    return png(seed + 1000)


def test_grid_mode_labels_a_selection_at_once(browser, sqlite_service: LiveService) -> None:  # type: ignore[no-untyped-def]
    ann_id, ann = sqlite_service.new_user("annotator")
    # Labelling only: no representation job to queue ahead of later tests' simulations.
    project = create_project(sqlite_service.admin, members=[ann_id], vae_epochs=2, latent_dim=8, representation="none")
    upload(sqlite_service.admin, project["id"], [("pool.zip", digits_zip(np.arange(900, 940), with_labels=False))])
    created = sqlite_service.admin.post(
        f"/projects/{project['id']}/rounds", json={"strategy": "random", "batch_size": 6}
    )
    assert wait_for_round(sqlite_service.admin, created.json()["id"])["status"] == "ready"
    page = _page(browser, sqlite_service, ann)
    page.goto(f"{sqlite_service.base_url}/#/label/{project['id']}")
    page.wait_for_selector(".progress-text:has-text('0 / 6, round 1')")
    page.keyboard.press("g")
    page.wait_for_selector(".grid .cell")
    assert page.locator(".grid .cell").count() == 6
    # Space selects the focused cell, arrows move; then one class key labels the whole selection.
    page.keyboard.press(" ")
    page.keyboard.press("ArrowRight")
    page.keyboard.press(" ")
    page.keyboard.press("ArrowRight")
    page.keyboard.press(" ")
    assert page.locator(".grid .cell.selected").count() == 3
    page.screenshot(path=str(SHOTS / "labelling-grid.png"))
    page.keyboard.press("4")
    page.wait_for_selector(".progress-text:has-text('3 / 6, round 1')")
    assert page.locator(".grid .cell").count() == 3
    rows = sqlite_service.admin.get(f"/projects/{project['id']}/export", params={"format": "json"}).json()["data"]
    assert len(rows) == 3 and {r["label"] for r in rows} == {"4"}
    # Leaving grid mode hides the grid; the single image and its position come back.
    page.keyboard.press("g")
    page.wait_for_selector(".grid", state="hidden")
    assert page.locator("img.subject").is_visible()
    # When everything is labelled, only the message is left: no stale grid, no class buttons.
    page.keyboard.press("g")
    page.wait_for_selector(".grid .cell")
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    for step in range(3):
        page.keyboard.press(" ")
        if step < 2:
            page.keyboard.press("ArrowRight")
    assert page.locator(".grid .cell.selected").count() == 3
    page.keyboard.press("2")
    page.wait_for_selector(".empty:has-text('Nothing to label right now')")
    assert not page.locator(".grid").is_visible() and not page.locator(".classes").is_visible()


def test_labelling_fits_a_phone_and_projects_set_their_own_hotkeys(browser, sqlite_service: LiveService) -> None:  # type: ignore[no-untyped-def]
    ann_id, ann = sqlite_service.new_user("annotator")
    classes = ["cat", "dog", "bird"]
    bad = sqlite_service.admin.post(
        "/projects", json={"name": "bad keys", "classes": classes, "settings": {"hotkeys": {"cat": "s"}}}
    )
    assert bad.status_code == 422 and "taken" in bad.text
    project = create_project(
        sqlite_service.admin, members=[ann_id], classes=classes, representation="none", hotkeys={"dog": "d"}
    )
    upload(sqlite_service.admin, project["id"], [("pool.zip", digits_zip(np.arange(950, 970), with_labels=False))])
    created = sqlite_service.admin.post(
        f"/projects/{project['id']}/rounds", json={"strategy": "random", "batch_size": 3}
    )
    assert wait_for_round(sqlite_service.admin, created.json()["id"])["status"] == "ready"
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(sqlite_service.base_url + "/#/login")
    page.get_by_label("Access token").fill(ann)
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:has-text('Projects')")
    page.goto(f"{sqlite_service.base_url}/#/label/{project['id']}")
    page.wait_for_selector(".progress-text:has-text('0 / 3, round 1')")
    # Nothing wider than the screen; the whole image and every class button visible without scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("img.subject").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
    for button in page.locator("button.class").all():
        b = button.bounding_box()
        assert b and b["y"] + b["height"] <= 844 and b["x"] + b["width"] <= 390
    page.screenshot(path=str(SHOTS / "labelling-390px.png"))
    # The project's own key for "dog", the class's first spare key for the others.
    assert page.locator("button.class:has-text('dog') kbd").inner_text() == "d"
    page.keyboard.press("d")
    page.wait_for_selector(".progress-text:has-text('1 / 3, round 1')")
    rows = sqlite_service.admin.get(f"/projects/{project['id']}/export", params={"format": "json"}).json()["data"]
    assert [r["label"] for r in rows] == ["dog"]
    context.close()


def test_sign_in_focus_admin_page_refusal_and_sign_out(browser, sqlite_service: LiveService, world: dict) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(sqlite_service.base_url + "/#/login")
    page.wait_for_selector("#token")
    # Focus lands on the token field, so typing signs in without a click.
    assert page.evaluate("document.activeElement && document.activeElement.id") == "token"
    page.keyboard.type(world["ann"])
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:has-text('Projects')")
    stored = page.evaluate("localStorage.getItem('suggestlab.token')")
    assert stored and stored != world["ann"]  # the browser keeps a session token, not the API token
    page.goto(sqlite_service.base_url + "/#/admin")
    page.wait_for_selector("h1:has-text('Admins only')")
    assert page.locator("input[type=file]").count() == 0
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("#token")
    assert sqlite_service.client(stored).get("/me").status_code == 401
    assert sqlite_service.client(world["ann"]).get("/me").status_code == 200
    context.close()


def test_admin_manages_members_roles_and_tokens(browser, sqlite_service: LiveService) -> None:  # type: ignore[no-untyped-def]
    user_id, token = sqlite_service.new_user("annotator", f"member-{np.random.randint(1e9)}")
    name = sqlite_service.admin.get("/users").json()["data"][-1]["name"]
    project = create_project(sqlite_service.admin, classes=["a", "b"])
    page = _page(browser, sqlite_service, sqlite_service.admin_token)
    page.goto(f"{sqlite_service.base_url}/#/admin")
    page.wait_for_selector("h2:has-text('Users')")
    page.select_option("#member-project", str(project["id"]))
    page.wait_for_selector("table.members td:has-text('No members yet')")
    # Add twice: the second time says so instead of claiming a new membership.
    add = page.get_by_role("button", name=f"Add to project: {name}")
    add.click()
    page.wait_for_selector(f"p.token:has-text('{name} is now a member.')")
    page.wait_for_selector(f"table.members td:has-text('{name}')")
    add.click()
    page.wait_for_selector(f"p.token:has-text('{name} was already a member.')")
    # Role change from the table.
    page.get_by_label(f"Role of {name}").select_option("engineer")
    page.wait_for_selector(f"p.token:has-text('{name} is now engineer.')")
    assert sqlite_service.client(token).get("/me").json()["role"] == "engineer"
    # Token revocation: the token stops working at once.
    page.get_by_role("button", name=f"Show the tokens of {name}").click()
    page.wait_for_selector(f"h3:has-text('Tokens of {name}')")
    token_id = sqlite_service.admin.get(f"/users/{user_id}/tokens").json()["data"][0]["id"]
    page.get_by_role("button", name=f"Revoke token {token_id} of {name}").click()
    page.wait_for_selector("table.token-list td:has-text('revoked')")
    assert sqlite_service.client(token).get("/me").status_code == 401
    # Removing the member empties the list again.
    page.get_by_role("button", name=f"Remove {name} from the project").click()
    page.wait_for_selector("table.members td:has-text('No members yet')")
    members = sqlite_service.admin.get(f"/projects/{project['id']}/members").json()["data"]
    assert members == []
    page.screenshot(path=str(SHOTS / "admin-users.png"), full_page=True)
    # The last admin cannot be demoted.
    admins = [u for u in sqlite_service.admin.get("/users").json()["data"] if u["role"] == "admin"]
    if len(admins) == 1:
        refused = sqlite_service.admin.patch(f"/users/{admins[0]['id']}", json={"role": "annotator"})
        assert refused.status_code == 409 and "last admin" in refused.json()["detail"]


def test_engineer_runs_and_cancels_simulations_from_the_dashboard(browser, sqlite_service: LiveService) -> None:  # type: ignore[no-untyped-def]
    eng_id, eng = sqlite_service.new_user("engineer")
    project = create_project(sqlite_service.admin, members=[eng_id], representation="none")
    upload(sqlite_service.admin, project["id"], [("pool.zip", digits_zip(np.arange(1000, 1100), with_labels=True))])
    page = _page(browser, sqlite_service, eng)
    page.goto(f"{sqlite_service.base_url}/#/dashboard/{project['id']}")
    page.wait_for_selector("input[name=sim-strategy][value=random]", state="attached")
    checked = page.locator("input[name=sim-strategy]:checked")
    while checked.count():
        checked.first.uncheck()
    page.check("input[name=sim-strategy][value=random]")
    for field, value in (("#sim-initial", "10"), ("#sim-batch", "10"), ("#sim-rounds", "2"), ("#sim-seeds", "1")):
        page.fill(field, value)
    page.click("button:has-text('Start simulation')")
    page.wait_for_selector(".sim-status:has-text('ready 100%')", timeout=120_000)
    page.wait_for_selector(".curve svg title:has-text('random:')", state="attached")
    # The page says what the curves learned with: this project's rounds use a CNN, and so did they.
    page.wait_for_selector(".sim-learner:has-text('a CNN from scratch')")
    # A long one is cancelled from its status line.
    page.check("input[name=sim-strategy][value=margin]")
    page.fill("#sim-rounds", "7")
    page.fill("#sim-seeds", "10")
    page.click("button:has-text('Start simulation')")
    page.wait_for_selector(".sim-status button:has-text('Cancel')")
    page.click(".sim-status button:has-text('Cancel')")
    page.wait_for_selector(".sim-status:has-text('cancelled')")
    sims = sqlite_service.client(eng).get(f"/projects/{project['id']}/simulations").json()["data"]
    assert [s["status"] for s in sims] == ["ready", "cancelled"]
    page.screenshot(path=str(SHOTS / "dashboard-simulation.png"), full_page=True)


def test_the_dashboard_follows_the_representation_job_and_its_failure(browser, sqlite_service: LiveService) -> None:  # type: ignore[no-untyped-def]
    eng_id, eng = sqlite_service.new_user("engineer")
    ann_id, ann = sqlite_service.new_user("annotator")
    project = create_project(sqlite_service.admin, members=[eng_id, ann_id], representation_epochs=1)
    pid = project["id"]
    # 20 images are too few to learn from: the job fails, and the page says why.
    upload(sqlite_service.admin, pid, [("few.zip", digits_zip(np.arange(1200, 1220), with_labels=False))])
    page = _page(browser, sqlite_service, eng)
    page.goto(f"{sqlite_service.base_url}/#/dashboard/{pid}")
    page.wait_for_selector(".representation .round-error:has-text('needs at least 32')", timeout=60_000)
    # More images queue a new job by themselves; the panel follows it to ready without a reload.
    upload(sqlite_service.admin, pid, [("more.zip", digits_zip(np.arange(1220, 1300), with_labels=False))])
    rows = sqlite_service.client(eng).get(f"/projects/{pid}/representations").json()["data"]
    assert [r["status"] for r in rows][1:] == ["failed"]
    second = rows[0]["id"]
    page.wait_for_selector(f".representation-ready:has-text('#{second} ready')", timeout=120_000)
    assert "over 100 pool images" in page.locator(".representation-ready").inner_text()
    # The engineer asks for it again from the page; the new job is listed and followed to ready.
    page.click(".representation button:has-text('Learn it again now')")
    _retry(lambda: sqlite_service.client(eng).get(f"/projects/{pid}/representations").json()["count"] == 3)
    third = sqlite_service.client(eng).get(f"/projects/{pid}/representations").json()["data"][0]["id"]
    page.wait_for_selector(f".representation-ready:has-text('#{third} ready')", timeout=120_000)
    page.screenshot(path=str(SHOTS / "dashboard-representation.png"), full_page=True)
    # An annotator sees the same state but gets no button to start a job.
    annotator = _page(browser, sqlite_service, ann)
    annotator.goto(f"{sqlite_service.base_url}/#/dashboard/{pid}")
    annotator.wait_for_selector(f".representation-ready:has-text('#{third} ready')")
    assert annotator.locator(".representation button").count() == 0


def test_undo_covers_skips_and_survives_a_reload(browser, sqlite_service: LiveService) -> None:  # type: ignore[no-untyped-def]
    ann_id, ann = sqlite_service.new_user("annotator")
    project = create_project(sqlite_service.admin, members=[ann_id], representation="none")
    upload(sqlite_service.admin, project["id"], [("pool.zip", digits_zip(np.arange(1200, 1230), with_labels=False))])
    created = sqlite_service.admin.post(
        f"/projects/{project['id']}/rounds", json={"strategy": "random", "batch_size": 4}
    )
    round_id = created.json()["id"]
    assert wait_for_round(sqlite_service.admin, round_id)["status"] == "ready"
    page = _page(browser, sqlite_service, ann)
    page.goto(f"{sqlite_service.base_url}/#/label/{project['id']}")
    page.wait_for_selector(".progress-text:has-text('0 / 4, round 1')")
    labelled = page.locator("img.subject").get_attribute("data-id")
    page.keyboard.press("3")
    page.wait_for_selector(".progress-text:has-text('1 / 4, round 1')")
    skipped = page.locator("img.subject").get_attribute("data-id")
    assert skipped != labelled
    page.keyboard.press("s")
    page.wait_for_selector(".progress-text:has-text('2 / 4, round 1')")
    page.reload()
    page.wait_for_selector(".progress-text:has-text('2 / 4, round 1')")

    def statuses() -> dict[int, str]:
        rows = sqlite_service.admin.get(f"/rounds/{round_id}/suggestions").json()["data"]
        return {r["image_id"]: r["status"] for r in rows}

    # After the reload, Z first undoes the skip, then the label, newest first, and says so.
    page.keyboard.press("z")
    page.wait_for_selector(".notice:has-text('Skip undone.')")
    page.wait_for_selector(f"img.subject[data-id='{skipped}']")
    assert statuses()[int(skipped)] == "pending"
    page.keyboard.press("z")
    page.wait_for_selector(".notice:has-text('Label undone.')")
    page.wait_for_selector(f"img.subject[data-id='{labelled}']")
    page.wait_for_selector(".progress-text:has-text('0 / 4, round 1')")
    assert statuses()[int(labelled)] == "pending"
    assert _annotations(sqlite_service.admin, project["id"]) == []
    page.keyboard.press("z")
    page.wait_for_selector(".notice:has-text('Nothing to undo.')")
    # Only the person who skipped may undo the skip.
    other_id, other = sqlite_service.new_user("annotator")
    sqlite_service.admin.post(f"/projects/{project['id']}/members", json={"user_id": other_id})
    item = sqlite_service.client(ann).post(f"/projects/{project['id']}/next", json={"limit": 1}).json()["data"][0]
    assert sqlite_service.client(ann).post(f"/suggestions/{item['suggestion_id']}/skip").status_code == 200
    refused = sqlite_service.client(other).delete(f"/suggestions/{item['suggestion_id']}/skip")
    assert refused.status_code == 409 and "your own" in refused.json()["detail"]
    assert sqlite_service.client(ann).delete(f"/suggestions/{item['suggestion_id']}/skip").status_code == 200


def test_engineer_reads_per_class_accuracy_confusion_and_opens_map_regions(
    browser, sqlite_service: LiveService
) -> None:  # type: ignore[no-untyped-def]
    from tests.app.test_method_rounds import _label_suggestions

    eng_id, eng = sqlite_service.new_user("engineer")
    engineer = sqlite_service.client(eng)
    pid, names = digits_project(
        sqlite_service.admin, members=[eng_id], pool=np.arange(2000, 2300), validation=np.arange(2400, 2450)
    )
    rounds = []
    for strategy, batch in (("random", 20), ("margin", 10), ("auto", 10)):
        created = engineer.post(f"/projects/{pid}/rounds", json={"strategy": strategy, "batch_size": batch})
        rounds.append(wait_for_round(engineer, created.json()["id"]))
        assert rounds[-1]["status"] == "ready", rounds[-1]
        if len(rounds) < 3:
            _label_suggestions(engineer, sqlite_service, rounds[-1]["id"], names)

    page = _page(browser, sqlite_service, eng)
    page.goto(f"{sqlite_service.base_url}/#/dashboard/{pid}")
    # The curve's newest point is described beside it with its accuracy per class; arrow keys on the
    # chart (one Tab stop) and hovering move between rounds.
    page.wait_for_selector(".curve-detail h3:has-text('Round 3: 30 labels')")
    # Round 3 ran auto: the detail says which part picked its batch and why.
    auto = rounds[2]["metrics"]["auto"]
    assert page.locator(".curve-detail .auto-rule").inner_text() == (
        f"auto picked this batch with {auto['picked_by']}: {auto['rule']}"
    )
    # And which model predicted.
    mode = rounds[2]["metrics"]["learner"]["mode"]
    assert page.locator(".curve-detail .task-model").inner_text().startswith(f"Task model: {mode}")
    # A round's phase text wraps inside its progress bar instead of being clipped.
    clipped = page.evaluate(
        """() => { const t = document.querySelector('table.rounds .progress-text');
            t.textContent = 'training the task model on 1,000 labels 45%';
            const bar = t.closest('.progress').getBoundingClientRect(), box = t.getBoundingClientRect();
            return t.scrollWidth > t.clientWidth || t.scrollHeight > t.clientHeight + 1
                || box.bottom > bar.bottom + 0.5 || box.right > bar.right + 0.5; }"""
    )
    assert clipped is False
    assert page.locator(".curve-detail .per-class tbody tr").count() == 10
    per_class = rounds[2]["metrics"]["per_class"]
    first = next(c for c in per_class if per_class[c] is not None)
    row = page.locator(f".curve-detail .per-class tbody tr:has(th:text-is('{first}'))")
    assert row.locator("td").inner_text().strip() == f"{100 * per_class[first]:.1f}%"
    page.locator(".curve svg[tabindex]").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(".curve-detail h3:has-text('Round 2: 20 labels')")
    page.locator(".curve svg .hit").last.hover()
    page.wait_for_selector(".curve-detail h3:has-text('Round 3')")
    # The confusion matrix of the chosen round: rows are true classes, its diagonal the correct ones.
    page.wait_for_selector("table.confusion")
    for index in (3, 2):
        page.select_option("#confusion-round", label=f"Round {index}")
        matrix = rounds[index - 1]["metrics"]["confusion"]
        page.wait_for_selector(f"table.confusion caption:has-text('Round {index}')")
        cells = page.locator("table.confusion tbody td").all_inner_texts()
        assert [int(c) for c in cells] == [v for line in matrix for v in line]
    assert page.locator("table.confusion td.diagonal").count() == 10

    # The map switches to its t-SNE layout by itself once the worker has built it.
    page.wait_for_selector(".latent-map[data-layout=tsne]", timeout=90_000)
    assert page.locator(".map-about").inner_text().startswith("t-SNE layout of the pixel PCA features, round 3.")
    total = page.locator(".latent-map circle.dot").count()
    assert total == 300
    # Colour by prediction: the model's guesses paint the pool in many class colours.
    page.select_option("#map-colour", "prediction")
    page.wait_for_selector(".legend[aria-label='Colour legend (prediction)']")
    fills = set(page.eval_on_selector_all(".latent-map circle.dot", "els => els.map(e => e.getAttribute('fill'))"))
    assert len(fills) >= 5
    page.screenshot(path=str(SHOTS / "dashboard-map.png"), full_page=True)
    # Colour by label; a legend button opens that class as a grid of thumbnails in the page.
    page.select_option("#map-colour", "label")
    page.wait_for_selector(".legend[aria-label='Colour legend (label)']")
    labels = [r["label"] for r in _annotations(engineer, pid)]
    top = max(set(labels), key=labels.count)
    page.click(f".legend-item[data-category='{top}']")
    page.wait_for_selector(f".map-selection h3:has-text('{labels.count(top)} images: label {top}')")
    assert page.locator(".map-selection .tile").count() == labels.count(top)
    # A tile opens the image in a dialog with its labelling history; Escape closes it.
    page.locator(".map-selection .tile").first.click()
    page.wait_for_selector("dialog.image-viewer[open] img.viewer-image")
    page.wait_for_selector(f"dialog.image-viewer li:has-text('{top} by')")
    page.screenshot(path=str(SHOTS / "dashboard-map-viewer.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog.image-viewer", state="hidden")

    # Box selection: dragging across the left half of the map opens exactly the points drawn there.
    page.locator(".latent-map svg").scroll_into_view_if_needed()
    svg = page.locator(".latent-map svg").bounding_box()
    assert svg
    cut = svg["x"] + svg["width"] / 2
    inside = page.evaluate(
        """([x0, y0, x1, y1]) => [...document.querySelectorAll('.latent-map circle.dot')].filter((c) => {
            const b = c.getBoundingClientRect(), x = b.x + b.width / 2, y = b.y + b.height / 2;
            return x >= x0 && x <= x1 && y >= y0 && y <= y1; }).length""",
        [svg["x"] + 6, svg["y"] + 6, cut, svg["y"] + svg["height"] - 6],
    )
    assert 0 < inside < total
    # From just inside the top-left corner (the chart's corners are rounded) to the middle, bottom.
    page.mouse.move(svg["x"] + 6, svg["y"] + 6)
    page.mouse.down()
    page.mouse.move(cut - 20, svg["y"] + svg["height"] / 2, steps=5)
    page.mouse.move(cut, svg["y"] + svg["height"] - 6, steps=5)
    page.mouse.up()
    heading = page.locator(".map-selection h3").inner_text()
    assert heading == f"{inside} images in the selected region", (heading, inside)
    assert page.locator(".map-selection .tile").count() == min(inside, 120)
