"""The dashboard, in a real browser (Debian's chromium driven by
chromium-driver through python3-selenium), after demo traffic through a real
HAProxy to the demo servers (reference, candidate, secondary) and the agent:
the overview shows the numbers of /stats and refreshes itself, a click leads
to a field and to an exchange with its differences highlighted, a hostile
body runs nothing. Plus the JSON API the page reads (/samples, /samples/ID),
its security headers and its bounds. Screenshots go to $MIFFY_BUILD
(build/dashboard-*.png)."""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse

import pytest

from conftest import BUILD, Stack, http_get, wait_for
from test_compare_e2e import Demo

VALUES = ["hello", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10",
          "changed", "missing", "reordered", "type", "extra", "header", "error"]
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
BROWSER_PACKAGES = "chromium chromium-driver python3-selenium"


def admin_get(port, path):
    status, headers, body = http_get(port, path)
    return status, headers, body


def admin_json(port, path):
    status, _, body = admin_get(port, path)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


def finished(doc):
    return sum(v for k, v in doc["outcomes"].items())


def send(hap, values, rounds=1, headers=None):
    for _ in range(rounds):
        for v in values:
            status, _, _ = http_get(hap.port, "/api/" + urllib.parse.quote(v, safe=""), headers=headers)
            assert status in (200, 500), (v, status)


@pytest.fixture(scope="module")
def dash(tmp_path_factory):
    """Demo servers, the agent with a secondary and an admin address, HAProxy;
    the demo's sample traffic twice and one hostile request, all concluded."""
    s = Stack(tmp_path_factory.mktemp("dashboard"))
    try:
        ref, cand, sec = (Demo(s, r) for r in ("reference", "candidate", "secondary"))
        agent = s.miffy(candidate=cand.url, secondary=sec.url, admin=True)
        hap = s.haproxy(reference=ref, agent=agent)
        send(hap, VALUES + [HOSTILE], headers={"Authorization": "Bearer s3cret"})
        send(hap, VALUES, headers={"Authorization": "Bearer s3cret"})
        expected = 2 * len(VALUES) + 1
        wait_for(lambda: finished(admin_json(agent.admin_port, "/stats")) >= expected, 20,
                 what="every exchange concluded")
        s.agent, s.hap, s.cand = agent, hap, cand
        yield s
    finally:
        problems = s.close()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"python3-selenium is missing: apt-get install {BROWSER_PACKAGES}")
    chromium = shutil.which("chromium")
    driver_bin = shutil.which("chromedriver")
    assert chromium and driver_bin, f"chromium or chromedriver missing: apt-get install {BROWSER_PACKAGES}"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,900", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver_bin), options=opts)
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()


def wait_js(d, script, timeout=15, what="page condition"):
    """Waits until the script returns a truthy value; returns it."""
    out = {}

    def ok():
        out["v"] = d.execute_script(script)
        return out["v"]
    wait_for(ok, timeout, interval=0.1, what=what)
    return out["v"]


def click(d, css, timeout=10):
    """Clicks the element css names, again if a refresh replaced it first."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    deadline = time.monotonic() + timeout
    while True:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
            return
        except (StaleElementReferenceException, NoSuchElementException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def screenshot(d, name, height=None):
    if height:
        d.set_window_size(1400, height)
    path = BUILD / f"dashboard-{name}.png"
    d.save_screenshot(str(path))
    if height:
        d.set_window_size(1400, 900)
    return path


def open_page(d, port, hash_="#/"):
    d.get(f"http://127.0.0.1:{port}/{hash_}")
    wait_js(d, "return document.querySelector('#status.ok, #status.bad') !== null", what="first render")


def rows_on_page(d):
    """endpoint -> {column: data-value} of the overview table."""
    return d.execute_script("""
        const out = {};
        for (const tr of document.querySelectorAll('table.overview tbody tr')) {
          const r = {};
          for (const td of tr.querySelectorAll('td[data-col]'))
            r[td.dataset.col] = td.dataset.value === undefined ? td.textContent : Number(td.dataset.value);
          const ms = tr.querySelectorAll('td[data-col=p50] [data-ms], td[data-col=p99] [data-ms]');
          r.latency = Array.from(ms).map((s) => Number(s.dataset.ms));
          out[tr.dataset.endpoint] = r;
        }
        return out;""")


# ---- served from memory, with a strict policy -----------------------------

def test_page_and_files_are_served_from_memory_with_a_strict_csp(dash):
    port = dash.agent.admin_port
    for path, ctype in (("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")):
        status, headers, body = admin_get(port, path)
        assert status == 200, path
        assert headers["content-type"].startswith(ctype), (path, headers["content-type"])
        assert headers["content-security-policy"] == CSP
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        text = body.decode()
        # Nothing from elsewhere: no absolute URL is fetched (the SVG namespace
        # is a name, not a request).
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
        assert "@import" not in text and "url(http" not in text
    index = admin_get(port, "/")[2].decode()
    assert re.findall(r"<script[^>]*>", index) == ['<script src="/app.js" defer>'], "inline script in the page"
    assert not re.search(r"\son\w+\s*=", index), "inline event handler in the page"
    js = admin_get(port, "/app.js")[2].decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, f"app.js uses {sink}"
    # The JSON documents carry the policy too, and an unknown path says where to go.
    assert admin_get(port, "/stats")[1]["content-security-policy"] == CSP
    status, headers, body = admin_get(port, "/nothing-here")
    assert status == 404 and b"/samples" in body


# ---- the JSON API the page reads -------------------------------------------

def test_samples_are_the_published_messages_redacted_alike(dash):
    port = dash.agent.admin_port
    index = admin_json(port, "/samples")
    published = {m["id"]: m for m in dash.agent.published()}
    assert index["samples"], "no sample kept"
    assert {s["outcome"] for s in index["samples"]} <= {"different", "noise", "candidate_error"}
    assert index["replay"]["candidate"] == dash.cand.url
    assert index["counts"]["stored"] == len(index["samples"])
    for s in index["samples"]:
        sample = admin_json(port, "/samples/" + urllib.parse.quote(s["id"], safe=""))
        assert sample["id"] == s["id"] and sample["endpoint"] == s["endpoint"]
        assert sample["request"]["headers"]["authorization"] == "[redacted]"
        assert "s3cret" not in json.dumps(sample)
        # The published message of a differing exchange is the sample, byte
        # for byte apart from its time stamp (publish=differences: noise
        # ones are kept as samples only).
        if s["id"] in published:
            assert {**sample, "time": ""} == {**published[s["id"]], "time": ""}
        assert {f["field"] for f in s["fields"]} <= {
            ("body" if d["where"] == "body" and not d["path"] else
             d["where"] if d["where"] == "status" else f'{d["where"]}:{d["path"]}')
            for d in sample["differences"]}
    status, headers, body = admin_get(port, "/samples/no-such-exchange")
    assert status == 404 and headers["content-type"] == "application/json"
    assert "error" in json.loads(body)
    only = admin_json(port, "/samples?endpoint=" + urllib.parse.quote("GET /api/missing"))
    assert only["samples"] and {s["endpoint"] for s in only["samples"]} == {"GET /api/missing"}


def test_samples_are_bounded_and_evictions_counted(stack):
    ref, cand = Demo(stack, "reference"), Demo(stack, "candidate")
    agent = stack.miffy(candidate=cand.url, admin=True,
                        args=["-o", "samples_per_endpoint=3", "-o", "samples_per_field=2"])
    hap = stack.haproxy(reference=ref, agent=agent)
    send(hap, ["changed"] * 6 + ["missing"])
    wait_for(lambda: finished(admin_json(agent.admin_port, "/stats")) >= 7, 20, what="7 exchanges")
    index = admin_json(agent.admin_port, "/samples")
    by_endpoint = {}
    for s in index["samples"]:
        by_endpoint.setdefault(s["endpoint"], []).append(s)
    # Without a secondary every field is a real difference: /length of
    # /api/changed is in each, so the per-field bound (2) keeps the newest 2.
    assert len(by_endpoint["GET /api/changed"]) == 2
    assert len(by_endpoint["GET /api/missing"]) == 1
    stats = admin_json(agent.admin_port, "/stats")["samples"]
    assert stats["taken"] == 7 and stats["stored"] == 3
    assert stats["evicted"]["field"] == 4 and stats["evicted"]["endpoint"] == 0
    metrics = admin_get(agent.admin_port, "/metrics")[2].decode()
    assert 'miffy_samples_evicted_total{reason="field"} 4' in metrics
    assert "miffy_samples_stored 3" in metrics
    last_ids = [d["id"] for d in stats_endpoint(agent, "GET /api/changed")["last_differences"]]
    assert [s["id"] for s in by_endpoint["GET /api/changed"]] == last_ids[:2], "the newest are kept"
    for evicted in last_ids[2:]:
        assert admin_get(agent.admin_port, "/samples/" + evicted)[0] == 404


def stats_endpoint(agent, name):
    return admin_json(agent.admin_port, "/stats")["endpoints"][name]


def test_bad_sample_bounds_are_refused_with_the_key_named():
    for setting, word in (("samples_per_endpoint=-1", "samples_per_endpoint"),
                          ("samples_max_bytes=0", "samples_max_bytes")):
        out = subprocess.run([BUILD / "miffy", "--candidate", "http://127.0.0.1:1", "-o", setting, "--check"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert out.returncode == 2, out.stdout
        assert word in out.stdout and len(out.stdout.strip().splitlines()) == 1, out.stdout


def test_admin_off_keeps_no_samples(stack):
    cand = Demo(stack, "candidate")
    agent = stack.miffy(candidate=cand.url, admin=False)
    # The agent handles SIGUSR2 from its "listening" line on (its SPOP port
    # opens a moment before).
    wait_for(lambda: " listening on " in agent.log(), 10, what="the agent's start line")
    # Nothing would ever read them: the agent keeps none (and /stats, here
    # from SIGUSR2, has no samples section).
    assert "samples" not in agent.stats()


# ---- in the browser -------------------------------------------------------------

def test_overview_lists_every_endpoint_with_the_numbers_of_stats(dash, browser):
    port = dash.agent.admin_port
    open_page(browser, port)
    wait_js(browser, "return document.querySelectorAll('table.overview tbody tr').length > 0")
    stats = admin_json(port, "/stats")
    rows = rows_on_page(browser)
    assert set(rows) == set(stats["endpoints"])
    for name, e in stats["endpoints"].items():
        r, o = rows[name], e["outcomes"]
        assert r["compared"] == e["compared"], name
        # the compared share, whose complement shedding leaves skipped
        assert r["compared_pct"] == pytest.approx(e["compared_pct"], abs=1e-3), name
        assert r["different_pct"] == pytest.approx(e["different_pct"], abs=1e-3), name
        assert r["noise_pct"] == pytest.approx(e["noise_pct"], abs=1e-3), name
        errs = o["candidate_error"]
        assert r["error_pct"] == pytest.approx(100 * errs / (e["compared"] + errs) if errs else 0, abs=1e-3)
        assert r["skipped"] == o["skipped"] and r["expired"] == o["expired"], name
        lat = e["latency_ms"]
        assert r["latency"] == pytest.approx([lat["reference"]["p50"], lat["candidate"]["p50"],
                                              lat["reference"]["p99"], lat["candidate"]["p99"]], abs=1e-3)
    # The hostile endpoint name is there, as text.
    assert any("script" in n for n in rows)
    # What needs a look first comes first: every endpoint with differences
    # before every one with noise only.
    order = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.overview tbody tr')).map((tr) => tr.dataset.endpoint)")
    looks = [stats["endpoints"][n]["different_pct"] + 0 for n in order]
    assert looks == sorted(looks, reverse=True)
    # Each row has its last-hour chart, with a bar in the current minute.
    bars = browser.execute_script(
        "return document.querySelector('tr[data-endpoint=\"GET /api/changed\"] svg.spark rect.spark-diff') !== null")
    assert bars
    cards = browser.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('.card')).map("
        "(c) => [c.dataset.card, Number(c.querySelector('.card-v').textContent)]))")
    assert cards["different"] == stats["outcomes"]["different"]
    assert cards["noise only"] == stats["outcomes"]["noise"]
    screenshot(browser, "overview")


def test_overview_refreshes_without_reloading(dash, browser):
    port = dash.agent.admin_port
    open_page(browser, port)
    browser.execute_script("window.__still_here = 42")
    before = rows_on_page(browser)["GET /api/changed"]["compared"]
    send(dash.hap, ["changed"])
    wait_js(browser, """
        const td = document.querySelector('tr[data-endpoint="GET /api/changed"] td[data-col=compared]');
        return td && Number(td.dataset.value) > %d;""" % before, timeout=20, what="live update")
    assert browser.execute_script("return window.__still_here") == 42, "the page reloaded"


def test_a_click_leads_to_a_field_and_to_its_exchange_highlighted(dash, browser):
    from selenium.webdriver.common.by import By
    port = dash.agent.admin_port
    open_page(browser, port)
    click(browser, "#live")      # no re-render under the clicks from now on
    click(browser, 'tr[data-endpoint="GET /api/missing"] a')
    wait_js(browser, "return document.querySelector('tr[data-field=\"body:/upper\"]')", what="fields table")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-field="body:/upper"]')
    assert row.find_element(By.CSS_SELECTOR, "td[data-col=kind]").text == "missing"
    assert row.find_element(By.CSS_SELECTOR, "td[data-col=verdict]").text == "regression"
    assert "Diffy" in row.find_element(By.CSS_SELECTOR, "td[data-col=rule]").text
    noisy = browser.find_element(By.CSS_SELECTOR, 'tr[data-field="body:/meta/timestamp"]')
    assert noisy.find_element(By.CSS_SELECTOR, "td[data-col=verdict]").text == "noise"
    # The config line that would ignore the field.
    click(browser, 'tr[data-field="body:/upper"] button.ignore')
    box = wait_js(browser, "return document.getElementById('ignore-box') && document.getElementById('ignore-box').textContent")
    assert 'ignore_paths = {"/upper"}' in box
    # Sorting by a header reorders the rows.
    click(browser, 'table.fields th[data-sort="path"]')
    wait_js(browser, "return document.querySelector('table.fields th[data-sort=path]').getAttribute('aria-sort') !== 'none'")
    paths = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.fields tbody tr')).map((tr) => tr.dataset.field)")
    assert paths == sorted(paths) or paths == sorted(paths, reverse=True)
    screenshot(browser, "endpoint")
    # The field's exchanges, then one of them.
    click(browser, 'tr[data-field="body:/upper"] td[data-col=samples] a')
    wait_js(browser, "return location.hash.includes('/field/') && document.querySelector('table.samples a')")
    click(browser, "table.samples a")
    wait_js(browser, "return document.querySelector('.side[data-side=reference] pre.body')", what="exchange view")
    ref_mark = browser.execute_script(
        "const s = document.querySelector('.side[data-side=reference] span[data-path=\"/upper\"]');"
        "return s && s.className")
    assert "hl-diff" in ref_mark, "the missing field is highlighted in the reference"
    assert browser.execute_script(
        "return document.querySelector('.side[data-side=candidate] span[data-path=\"/upper\"]')") is None
    ghost = browser.execute_script(
        "const g = document.querySelector('.side[data-side=candidate] [data-ghost=\"/upper\"]');"
        "return g && [g.className, g.textContent]")
    assert ghost and "hl-diff" in ghost[0] and "absent here" in ghost[1], "the candidate shows where /upper is missing"
    noise_mark = browser.execute_script(
        "return document.querySelector('.side[data-side=candidate] span[data-path=\"/meta/timestamp\"]').className")
    assert "hl-noise" in noise_mark, "noise is marked as noise"
    assert browser.find_element(By.CSS_SELECTOR, '.side[data-side=secondary]')
    curl = browser.find_element(By.ID, "curl").text
    assert curl.startswith("curl " + dash.cand.url + "/api/missing")
    assert "'X-Miffy-Role: candidate'" in curl and "authorization: [redacted]" in curl
    assert "host:" not in curl.lower()
    screenshot(browser, "exchange", height=1700)


def test_a_header_difference_is_highlighted_on_both_sides(dash, browser):
    port = dash.agent.admin_port
    sample = admin_json(port, "/samples?endpoint=" + urllib.parse.quote("GET /api/header"))["samples"][0]
    open_page(browser, port, "#/exchange/" + urllib.parse.quote(sample["id"], safe=""))
    classes = wait_js(browser, """
        const rows = document.querySelectorAll('.side tr[data-header="cache-control"]');
        return rows.length >= 2 && Array.from(rows).map((r) => r.className);""")
    assert classes[0] == "hl-diff" and classes[1] == "hl-diff"


def test_a_hostile_body_runs_nothing_and_reads_literally(dash, browser):
    from selenium.common.exceptions import NoAlertPresentException
    port = dash.agent.admin_port
    hostile = [s for s in admin_json(port, "/samples")["samples"] if "script" in s["endpoint"]]
    assert hostile, "the hostile exchange was kept"
    for hash_ in ("#/", "#/endpoint/" + urllib.parse.quote(hostile[0]["endpoint"], safe=""),
                  "#/exchange/" + urllib.parse.quote(hostile[0]["id"], safe="")):
        open_page(browser, port, hash_)
        time.sleep(0.5)
        assert browser.execute_script("return typeof window.pwned") == "undefined", hash_
        try:
            browser.switch_to.alert
            pytest.fail("an alert opened")
        except NoAlertPresentException:
            pass
        assert browser.execute_script("return document.querySelectorAll('img, script:not([src])').length") == 0
    # The exchange shows the body's text exactly as the service sent it.
    text = wait_js(browser, "return document.querySelector('.side[data-side=reference] pre.body').textContent")
    assert json.dumps(HOSTILE) in text
    screenshot(browser, "hostile", height=1500)


def test_the_endpoint_page_shows_confidence_and_the_latency_verdict(stack, browser):
    """12 exchanges of /api/missing with a secondary: /upper is a confident
    regression, /meta/timestamp noise; the latency is judged after 10."""
    from selenium.webdriver.common.by import By
    ref, cand, sec = (Demo(stack, r) for r in ("reference", "candidate", "secondary"))
    agent = stack.miffy(candidate=cand.url, secondary=sec.url, admin=True,
                        args=["-o", "latency_min_count=10", "-o", "latency_floor_ms=1000"])
    hap = stack.haproxy(reference=ref, agent=agent)
    send(hap, ["missing"] * 12)
    wait_for(lambda: finished(admin_json(agent.admin_port, "/stats")) >= 12, 20, what="12 exchanges")
    open_page(browser, agent.admin_port, "#/endpoint/" + urllib.parse.quote("GET /api/missing", safe=""))
    wait_js(browser, "return document.querySelector('tr[data-field=\"body:/upper\"] td[data-col=confidence] .badge')",
            what="confidence column")
    verdict = browser.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('table.fields tbody tr')).map("
        "(tr) => [tr.dataset.field, tr.querySelector('td[data-col=confidence] .badge').dataset.verdict]))")
    assert verdict["body:/upper"] == "regression", verdict
    assert verdict["body:/meta/timestamp"] == "noise", verdict
    cell = browser.find_element(By.CSS_SELECTOR, 'tr[data-field="body:/upper"] td[data-col=confidence] .badge')
    lower = stats_endpoint(agent, "GET /api/missing")["noise_fields"]["body:/upper"]["confidence"]["lower"]
    assert cell.text == f"regression [{lower:.2f}, 1.00]"
    assert "12 exchanges with the secondary's answer" in cell.get_attribute("title")
    facts = browser.find_element(By.CSS_SELECTOR, "p.facts").text
    assert "Candidate latency within tolerance." in facts, facts
    screenshot(browser, "endpoint-confidence")
