"""The console at /ui, driven in headless Chromium (Debian's package, through Playwright) against a served lender
after real traffic, a drift shift, feedback and a rollout (tests/lender_scenario.py): every page shows what the API
says, with no console errors, at 1280 and 390 px; axe-core finds nothing serious; sign-in, scopes and CSRF hold;
an admin's actions are confirmed, done and audited under their name."""
import os
import re
import shutil

import numpy as np
import pytest
import requests

from conftest import ROOT
from lender_scenario import Lender

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium (Debian's package) is not installed")
# TERN_UPDATE_SCREENSHOTS=1 writes the docs' screenshots (docs/console-*.png) from this run.
SCREENSHOTS = os.environ.get("TERN_UPDATE_SCREENSHOTS") == "1"


@pytest.fixture(scope="module")
def lender(tmp_path_factory):
    scenario = Lender(tmp_path_factory.mktemp("console"))
    yield scenario
    scenario.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


class Visit:
    """A signed-in page of one browser context, collecting the console's errors."""

    def __init__(self, browser, lender, key="admin", width=1280):
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.lender = lender
        if key:
            self.page.goto(lender.url + "/ui")
            assert "/ui/login" in self.page.url
            self.page.fill("#credential", lender.keys[key])
            self.page.click("form[action='/ui/login'] button")
            self.page.wait_for_url(lender.url + "/ui")

    def go(self, path):
        answer = self.page.goto(self.lender.url + path)
        return answer

    def row(self, table_selector, header):
        """The cells' text of the row whose header cell is `header`."""
        for row in self.page.locator(f"{table_selector} tbody tr").all():
            heads = row.locator("th").all()
            if heads and heads[0].inner_text().strip() == header:
                return [cell.inner_text().strip() for cell in row.locator("td").all()]
        return []

    def close(self):
        self.context.close()


def three(value):
    return f"{value:.3g}"


def stats(lender, version):
    answer = lender.get(f"/v2/models/credit/versions/{version}/stats").json()["model_stats"][0]["inference_stats"]
    return answer["success"]["count"] + answer["fail"]["count"]


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_shows_the_apis_numbers(browser, lender, width):
    visit = Visit(browser, lender, width=width)
    try:
        page = visit.page
        # Models: each model's requests in the last 5 minutes are what the statistics extension counts.
        visit.go("/ui")
        credit = visit.row("table.models", "credit")
        assert credit[4].replace(",", "") == str(stats(lender, 1) + stats(lender, 2)), credit
        assert "v1 (production)" in credit[0] and "v1 70% · v2 30%" == credit[1], credit
        assert page.locator("table.models svg.spark").count() == 2

        visit.go("/ui/models/credit")
        assert page.locator("h1").inner_text() == "credit"
        live = visit.row("table.live", "v1")
        assert live[0].replace(",", "") == str(stats(lender, 1)) and live[3] == "0", live
        # Drift: the drifted features as GET .../drift names them, income first.
        drift = lender.get("/api/v1/models/credit/drift").json()
        shown = page.locator("#drift p strong.bad").inner_text()
        assert shown == "Drifted: " + ", ".join(drift["drifted"]) and "income" in shown
        income = {f["feature"]: f for f in drift["features"]}["income"]
        assert visit.row("#drift table", "income")[2] == three(income["psi"])
        assert page.locator("#drift figure svg.histogram").count() == sum(1 for f in drift["features"] if f.get("bins"))
        # Live quality beside the bundle's validation, as GET .../performance gives them.
        performance = lender.get("/api/v1/models/credit/performance").json()["versions"][0]
        assert visit.row("#quality table", "accuracy") == [three(performance["live"]["accuracy"]),
                                                          three(performance["validation"]["accuracy"])]
        alert = lender.get("/api/v1/alerts").json()["alerts"][0]
        assert visit.row("#alerts table", "credit-drift")[1] == alert["state"] == "firing"
        rollout = lender.get("/api/v1/models/credit/rollout").json()
        assert f"{rollout['state']}, step 1 of 2" in page.locator("#rollout p").first.inner_text()
        audit = lender.get("/api/v1/audit?model=credit").json()
        caption = page.locator("#audit caption").inner_text()
        assert caption == f"{min(len(audit), 100)} of {len(audit)} entries, newest first"
        assert page.locator("#audit tbody tr th").first.inner_text() == str(audit[-1]["seq"])
        card = page.locator("#card .card")
        holdout = lender.get("/api/v1/models/credit/versions/1").json()["metrics"]
        assert "credit v1" in card.locator("h3").first.inner_text()
        assert f"{holdout['accuracy']:.4f}"[:5] in card.inner_text() or three(holdout["accuracy"]) in card.inner_text()

        visit.go("/ui/jobs")
        job = lender.get(f"/api/v1/jobs/{lender.job}").json()
        cells = visit.row("main table", lender.job)
        assert cells[1] == job["state"] == "succeeded" and cells[3] == str(job["rows"]) == "200", cells

        visit.go("/ui/keys")
        html = page.content()
        for name, key in lender.keys.items():
            assert visit.row("main table", name), name
            assert key.split("_")[-1] not in html  # never a secret
        assert "not since this server started" not in visit.row("main table", "inferrer")[3]

        # Usable at this width: nothing wider than the window but the tables' own scrolling boxes.
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
        assert visit.errors == [], visit.errors
        if SCREENSHOTS:
            for path, name in [("/ui", "models"), ("/ui/models/credit", "model")]:
                visit.go(path)
                page.wait_for_timeout(300)
                page.screenshot(path=os.path.join(ROOT, "docs", f"console-{name}-{width}.png"), full_page=name == "models")
    finally:
        visit.close()


def test_the_live_parts_refresh_by_themselves(browser, lender):
    visit = Visit(browser, lender)
    try:
        visit.go("/ui/models/credit")
        before = int(visit.row("table.live", "v1")[0].replace(",", ""))
        rows = np.ones((1, 10), dtype=np.float32)
        for _ in range(5):
            answer = requests.post(f"{lender.url}/v2/models/credit/versions/1/infer", headers=lender.headers("inferrer"), timeout=10,
                                   json={"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": rows.ravel().tolist()}]})
            assert answer.status_code == 200
        # The page's script polls: the table shows the new count without a reload (no eval: the page's CSP forbids it).
        expect(visit.page.locator("table.live tbody tr td").first).to_have_text(f"{before + 5:,}", timeout=10_000)
        assert visit.errors == []
    finally:
        visit.close()


def test_axe_finds_nothing_serious(browser, lender):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    visit = Visit(browser, lender)
    anonymous = Visit(browser, lender, key=None)
    try:
        anonymous.go("/ui/login")
        pages = [(anonymous.page, "/ui/login")]
        for path in ["/ui", "/ui/models/credit", "/ui/jobs", "/ui/keys", "/ui/models/credit/confirm?action=archive&version=2"]:
            pages.append((visit.page, path))
        for page, path in pages:
            if path != "/ui/login":
                page.goto(lender.url + path)
            results = axe.run(page)
            serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in results.response["violations"]
                       if v["impact"] in ("serious", "critical")]
            assert serious == [], (path, serious)
        # The explanation page too.
        visit.go("/ui/models/credit")
        visit.page.click("#explain button")
        assert "/explain" in visit.page.url
        results = axe.run(visit.page)
        assert [v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")] == []
    finally:
        visit.close()
        anonymous.close()


def test_sign_in_scopes_and_forged_forms(browser, lender):
    base = lender.url
    # No credential: the login page.
    answer = requests.get(f"{base}/ui/models/credit", allow_redirects=False, timeout=10)
    assert answer.status_code == 303 and answer.headers["Location"] == "/ui/login?next=/ui/models/credit"
    assert requests.get(f"{base}/ui/login", timeout=10).text.count('name="credential"') == 1
    # A wrong key, and a key without `read`, are refused at the door with the reason.
    bad = requests.post(f"{base}/ui/login", data={"credential": "tern_nope_nope", "next": "/ui"}, allow_redirects=False, timeout=10)
    assert bad.status_code == 401 and ("not a Tern API key" in bad.text or "unknown API key" in bad.text)
    infer_only = requests.post(f"{base}/ui/login", data={"credential": lender.keys["inferrer"]}, allow_redirects=False, timeout=10)
    assert infer_only.status_code == 401 and "lacks the &#39;read&#39; scope" in infer_only.text
    # The cookie: HttpOnly, SameSite=Strict, the console's path only; a sign-in never redirects off the site.
    signed = requests.post(f"{base}/ui/login", data={"credential": lender.keys["reader"], "next": "//evil.example/"},
                           allow_redirects=False, timeout=10)
    assert signed.status_code == 303 and signed.headers["Location"] == "/ui"
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    # Security headers on every page.
    page = requests.get(f"{base}/ui", cookies=signed.cookies, timeout=10)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"] and "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"

    before = lender.get("/api/v1/audit").json()
    # A `read` key sees no action and cannot act, even with its own form token.
    reader = Visit(browser, lender, key="reader")
    try:
        reader.go("/ui/models/credit")
        assert reader.page.locator("form[action$='/confirm']").count() == 0
        assert reader.page.locator("#explain").count() == 0  # explaining needs `infer`
        assert reader.go("/ui/models/credit/confirm?action=archive&version=2").status == 403
        assert reader.go("/ui/keys").status == 403
        reader.go("/ui")
        token = reader.page.evaluate("document.querySelector('form.signout input[name=csrf]').value")
        refused = reader.page.request.post(f"{base}/ui/models/credit/act",
                                           form={"csrf": token, "action": "archive", "version": "2"})
        assert refused.status == 403 and "lacks the &#39;admin&#39; scope" in refused.text()
    finally:
        reader.close()
    # An admin's cookie, a form posted without the token (what another site's page could send): refused.
    admin = Visit(browser, lender)
    try:
        forged = admin.page.request.post(f"{base}/ui/models/credit/act", form={"action": "archive", "version": "2"})
        assert forged.status == 403 and "token" in forged.text()
        wrong = admin.page.request.post(f"{base}/ui/models/credit/act", form={"action": "archive", "version": "2", "csrf": "x" * 43})
        assert wrong.status == 403
        # Another site's page: the browser sends its origin, refused before any route.
        cross = requests.post(f"{base}/ui/models/credit/act", data={"action": "archive", "version": "2"},
                              headers={"Origin": "http://evil.example"}, cookies={"tern_console": lender.keys["admin"]}, timeout=10)
        assert cross.status_code == 403
        assert lender.get("/api/v1/audit").json() == before
        assert lender.get("/api/v1/models/credit/versions/2").json()["state"] == "active"
        # Signing out ends the session.
        admin.go("/ui")
        admin.page.click("form.signout button")
        admin.page.wait_for_url(re.compile(r".*/ui/login.*"))
        assert "/ui/login" in admin.go("/ui/models/credit").url
    finally:
        admin.close()


def test_admin_actions_are_confirmed_done_and_audited(browser, lender):
    visit = Visit(browser, lender)
    page = visit.page
    try:
        visit.go("/ui/models/credit")
        page.fill("#alias", "staging")
        page.select_option("#alias-version", "2")
        page.click("form[aria-label='Point an alias at a version'] button")
        assert "/confirm" in page.url and "point credit's alias staging at v2" in page.locator("main").inner_text()
        assert lender.get("/api/v1/models/credit").json()["aliases"].get("staging") is None  # nothing yet
        page.click("main form button.danger")
        page.wait_for_url(re.compile(r".*/ui/models/credit\?done=.*"))
        assert "Done: point credit's alias staging at v2." in page.locator(".notice").inner_text()
        assert lender.get("/api/v1/models/credit").json()["aliases"]["staging"] == 2
        entry = lender.get("/api/v1/audit?model=credit").json()[-1]
        assert (entry["action"], entry["actor"], entry["version"]) == ("alias", "key:admin", 2)
        # Pause the rollout from its section.
        page.click("#rollout form:has(input[value='pause']) button")
        page.click("main form button.danger")
        page.wait_for_url(re.compile(r".*done=.*"))
        assert lender.get("/api/v1/models/credit/rollout").json()["state"] == "paused"
        assert lender.get("/api/v1/audit?model=credit").json()[-1]["actor"] == "key:admin"
        # A refused action shows the API's reason (the production alias is the rollout's to move).
        visit.go("/ui/models/credit/confirm?action=archive&version=1")
        page.click("main form button.danger")
        assert page.locator("p.error").count() == 1
        assert lender.get("/api/v1/models/credit/versions/1").json()["state"] == "active"
        assert visit.errors == [] or all("409" in e or "400" in e for e in visit.errors), visit.errors
    finally:
        visit.close()


def test_an_explanation_is_charted_with_the_explain_routes_numbers(browser, lender):
    visit = Visit(browser, lender)
    page = visit.page
    try:
        visit.go("/ui/models/credit")
        row = [35, 52000, 0.3, 4, 0, 0, 12000, 6, 7, 0.4]
        body = '{"inputs":[{"name":"features","datatype":"FP32","shape":[1,10],"data":%s}]}' % row
        page.fill("#request", body)
        page.click("#explain button")
        page.wait_for_url(re.compile(r".*/explain$"))
        rest = requests.post(f"{lender.url}/v2/models/credit/versions/1/explain", headers=lender.headers(), timeout=30,
                             data=body).json()
        output = rest["outputs"][0]
        values = dict(zip(rest["features"], rest["rows"][0]["attributions"][output]))
        shown = {r.locator("th").inner_text(): float(r.locator("td").inner_text()) for r in page.locator("main table tbody tr").all()}
        assert shown.keys() == values.keys()
        for name, value in values.items():
            assert shown[name] == pytest.approx(value, rel=1e-4, abs=1e-9), name
        assert page.locator("main figure svg.bars rect").count() == len(values)
        assert visit.errors == []
    finally:
        visit.close()


def test_the_graphql_playground_runs_a_query_with_a_key(browser, lender):
    visit = Visit(browser, lender, key=None)
    page = visit.page
    try:
        visit.go("/graphql")
        assert page.title() == "GraphQL · Tern"
        page.fill("#credential", lender.keys["reader"])
        page.click("#run button")
        expect(page.locator("#answer pre")).to_contain_text("defaultVersion")
        answer = page.locator("#answer pre").inner_text()
        import json
        expected = requests.post(f"{lender.url}/graphql", headers=lender.headers("reader"), timeout=10,
                                 json={"query": page.locator("#query").input_value()}).json()
        assert json.loads(answer) == expected and [m["name"] for m in expected["data"]["models"]] == ["credit", "other"]
        expect(page.locator("#types li").nth(5)).to_be_attached()
        assert "Model (object)" in page.locator("#types").text_content()
        # Without a key the page shows the server's refusal.
        page.fill("#credential", "")
        page.click("#run button")
        expect(page.locator("#answer pre")).to_contain_text("authentication required")
        assert visit.errors == [] or all("401" in e for e in visit.errors), visit.errors
    finally:
        visit.close()
