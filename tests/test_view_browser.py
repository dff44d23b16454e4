"""`guild view`'s pages in a real headless Chromium (driven through
Selenium and chromedriver) over a home made by running a real script:
a batch of six trials and one run of its own. The charts are read
through their DOM (SVG elements, the data attributes each chart
container sets); screenshots are saved in the test's temp dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from test_view import _guild, _start_view, _stop

selenium = pytest.importorskip("selenium", reason="the browser tests need selenium (the test extra)")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="the browser tests need chromium and chromedriver"
)

TRAIN = """\
import time
lr = 0.1
layers = 1
for step in range(8):
    loss = (1.0 + layers) * lr * 10 / (step + 1)
    print("step: %d" % step)
    print("loss: %f" % loss)
with open("curve.csv", "w") as f:
    f.write("step,loss\\n0,%f\\n" % loss)
"""


PIPELINE = """\
prepare:
  main: prepare
use:
  main: use
  requires:
    - operation: prepare
"""

SLOW = """\
import os, time
print("start", flush=True)
while not os.path.exists("go"):
    time.sleep(0.05)
print("end", flush=True)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("view-browser")
    home, project = root / "home", root / "project"
    home.mkdir()
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    out = _guild(home, project, "run", "train.py", "lr=[0.1,0.01,0.001]", "layers=[1,2]", "-y", timeout=120)
    assert out.returncode == 0, out.stderr
    out = _guild(home, project, "run", "train.py", "lr=0.5", "layers=3", "-y")
    assert out.returncode == 0, out.stderr
    # A run with a dependency on another.
    pipeline = root / "pipeline"
    pipeline.mkdir()
    (pipeline / "guild.yml").write_text(PIPELINE)
    (pipeline / "prepare.py").write_text("open('data.txt', 'w').write('42')\n")
    (pipeline / "use.py").write_text("print('read', open('data.txt').read())\n")
    for op in ("prepare", "use"):
        out = _guild(home, pipeline, "run", op, "-y")
        assert out.returncode == 0, out.stderr
    runs = json.loads(_guild(home, project, "runs", "--json").stdout)
    batch = next(r["id"] for r in runs if r["operation"].endswith("+"))
    trials = [p.name for p in (home / "runs" / batch).iterdir() if p.is_symlink() and len(p.name) == 32]
    assert len(trials) == 6
    (project / "slow.py").write_text(SLOW)
    proc, url = _start_view(home, project)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", f"--user-data-dir={root / 'chromium'}"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER, log_output=str(root / "chromedriver.log"))
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(30)
        yield {"driver": driver, "url": url, "home": home, "root": root, "runs": runs,
               "batch": batch, "trials": trials}
    finally:
        if driver is not None:
            driver.quit()
        _stop(proc)
        for lock in home.glob("runs/*/.guild/LOCK"):
            try:
                os.kill(int(lock.read_text().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        # chromedriver's own children, should quit have left any.
        if service.process and service.process.poll() is None:
            service.process.kill()


def wait(driver, pred, timeout=20, what="the page"):
    try:
        # An element the page has just redrawn is asked for again.
        return WebDriverWait(driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: pred(d))
    except Exception:
        raise AssertionError(f"timed out waiting for {what}; page: {driver.current_url}") from None


def open_page(site, fragment: str):
    driver = site["driver"]
    # A fresh load each time: the page's state (its selection) starts
    # anew, and no element of the page before is found.
    driver.get("about:blank")
    driver.get(f"{site['url']}/#{fragment}")
    return driver


def rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#runs tr")


def shot(site, name: str) -> Path:
    path = site["root"] / f"{name}.png"
    assert site["driver"].save_screenshot(str(path))
    assert path.stat().st_size > 1000
    return path


def no_errors(driver):
    msg = driver.find_element(By.ID, "message")
    assert "error" not in (msg.get_attribute("class") or ""), msg.text


def test_runs_table_lists_every_run(site):
    driver = open_page(site, "/runs")
    wait(driver, lambda d: len(rows(d)) == len(site["runs"]), what="every run in the table")
    listed = {tr.get_attribute("data-run") for tr in rows(driver)}
    assert listed == {r["id"] for r in site["runs"]}
    assert driver.find_element(By.ID, "range").text == f"1–{len(site['runs'])} of {len(site['runs'])}"
    # Flags and last scalars are columns of their own.
    heads = [th.text.rstrip(" ▲▼") for th in driver.find_elements(By.CSS_SELECTOR, "#runs-table th")]
    assert {"run", "operation", "status", "label", "layers", "lr", "loss"} <= set(heads)
    no_errors(driver)
    shot(site, "runs")


def test_a_filter_narrows_the_table_and_a_bad_one_says_why(site):
    driver = open_page(site, "/runs")
    wait(driver, lambda d: len(rows(d)) == len(site["runs"]))
    box = driver.find_element(By.ID, "filter")
    box.clear()
    box.send_keys("lr = 0.01", Keys.ENTER)
    wait(driver, lambda d: len(rows(d)) == 2, what="the filtered table")
    labels = sorted(tr.find_element(By.CSS_SELECTOR, "td.label").text for tr in rows(driver))
    assert labels == ["layers=1 lr=0.01", "layers=2 lr=0.01"]
    box.clear()
    box.send_keys("lr = = 2", Keys.ENTER)
    msg = wait(driver, lambda d: d.find_element(By.ID, "message").text, what="the error line")
    assert "error" in driver.find_element(By.ID, "message").get_attribute("class")
    assert "\n" not in msg
    box.clear()
    box.send_keys(Keys.ENTER)
    wait(driver, lambda d: len(rows(d)) == len(site["runs"]))


def test_sorting_by_a_scalar_column(site):
    driver = open_page(site, "/runs")
    wait(driver, lambda d: len(rows(d)) == len(site["runs"]))
    col = [th.get_attribute("data-sort") for th in driver.find_elements(By.CSS_SELECTOR, "#runs-table th")].index("scalar:loss")

    def losses(d):
        vals = [tr.find_elements(By.TAG_NAME, "td")[col].text for tr in rows(d)]
        return [float(v) for v in vals if v]

    def sort_mark(d):
        return d.find_element(By.CSS_SELECTOR, 'th[data-sort="scalar:loss"]').text[-1]

    driver.find_element(By.CSS_SELECTOR, 'th[data-sort="scalar:loss"]').click()
    wait(driver, lambda d: sort_mark(d) == "▲", what="ascending")
    assert losses(driver) == sorted(losses(driver)) and len(losses(driver)) == 7
    driver.find_element(By.CSS_SELECTOR, 'th[data-sort="scalar:loss"]').click()
    wait(driver, lambda d: sort_mark(d) == "▼", what="descending")
    assert losses(driver) == sorted(losses(driver), reverse=True)


def test_compare_draws_one_curve_per_selected_run(site):
    driver = open_page(site, "/runs")
    wait(driver, lambda d: len(rows(d)) == len(site["runs"]))
    chosen = site["trials"][:3]
    for tr in rows(driver):
        if tr.get_attribute("data-run") in chosen:
            tr.find_element(By.CSS_SELECTOR, "input.select-run").click()
    assert driver.find_element(By.ID, "selected-count").text == "3 selected"
    driver.find_element(By.ID, "compare").click()
    curves = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#curves[data-series]"), what="the curves")[0]
    assert curves.get_attribute("data-series") == "3"
    assert set(curves.get_attribute("data-runs").split(",")) == set(chosen)
    # uPlot's legend: the x series and one row per run.
    assert len(curves.find_elements(By.CSS_SELECTOR, ".u-legend .u-series")) == 4
    assert curves.find_elements(By.TAG_NAME, "canvas")
    # Smoothing redraws the same three curves.
    driver.execute_script(
        "const s = document.getElementById('smoothing'); s.value = 0.9; s.dispatchEvent(new Event('input'));")
    wait(driver, lambda d: d.find_element(By.ID, "smoothing-value").text == "0.9")
    wait(driver, lambda d: d.find_element(By.ID, "curves").get_attribute("data-series") == "3")
    lines = driver.find_elements(By.CSS_SELECTOR, "#parallel svg path.pc-line")
    assert {p.get_attribute("data-run") for p in lines} == set(chosen)
    points = driver.find_elements(By.CSS_SELECTOR, "#scatter svg circle.sc-point")
    assert len(points) == 3
    table = driver.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")
    assert {tr.get_attribute("data-run") for tr in table} == set(chosen)
    no_errors(driver)
    shot(site, "compare")


def test_batch_page_parallel_coordinates_one_line_per_trial(site):
    driver = open_page(site, f"/batch/{site['batch']}")
    svg = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#parallel svg.parallel"), what="the plot")[0]
    lines = svg.find_elements(By.CSS_SELECTOR, "path.pc-line")
    assert len(lines) == 6
    assert {p.get_attribute("data-run") for p in lines} == set(site["trials"])
    # Axes: the two flags that vary, then the objective.
    axes = [g.get_attribute("data-dim") for g in svg.find_elements(By.CSS_SELECTOR, "g.axis")]
    assert axes == ["layers", "lr", "loss"]
    # Every line crosses every axis: three points each.
    for p in lines:
        assert p.get_attribute("d").count("L") == 2
    history = driver.find_element(By.ID, "history")
    assert history.get_attribute("data-points") == "6"
    trial_rows = driver.find_elements(By.CSS_SELECTOR, "#trials-table tbody tr")
    assert len(trial_rows) == 6
    # Best so far never gets worse down the table, and the best trial
    # is the one with the lowest loss (lr=0.001, layers=1).
    best = [float(tr.find_elements(By.TAG_NAME, "td")[-1].text) for tr in trial_rows]
    assert best == sorted(best, reverse=True)
    lowest = next(r for r in site["runs"] if r["label"] == "layers=1 lr=0.001")
    assert driver.find_element(By.CSS_SELECTOR, "#best a").get_attribute("href").endswith(lowest["id"])
    no_errors(driver)
    shot(site, "batch")


def test_run_page_shows_output_files_and_a_csv(site):
    run_id = site["trials"][0]
    driver = open_page(site, f"/run/{run_id}")
    wait(driver, lambda d: "loss:" in d.find_element(By.ID, "output").text, what="the output")
    flags = driver.find_element(By.CSS_SELECTOR, "table.flags").text
    assert "lr" in flags and "layers" in flags
    chart = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#run-chart[data-series='1']"), what="the chart")
    assert chart
    link = next(a for a in driver.find_elements(By.CSS_SELECTOR, "a.file-link") if a.text == "curve.csv")
    link.click()
    cells = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#file-viewer table.csv th"), what="the CSV")
    assert [c.text for c in cells] == ["step", "loss"]
    no_errors(driver)


def test_a_label_set_on_the_page_is_on_disk(site):
    run_id = site["trials"][1]
    driver = open_page(site, f"/run/{run_id}")
    box = wait(driver, lambda d: d.find_elements(By.ID, "run-label"))[0]
    box.clear()
    box.send_keys("chosen on the page")
    driver.find_element(By.ID, "save-label").click()
    wait(driver, lambda d: d.find_element(By.ID, "message").text == "label set", what="the change")
    attr = site["home"] / "runs" / run_id / ".guild" / "attrs" / "label"
    assert attr.read_text().strip() == "chosen on the page"
    out = _guild(site["home"], site["root"], "runs", "info", run_id[:8])
    assert "label: chosen on the page" in out.stdout


def test_tag_and_mark_from_the_table(site):
    driver = open_page(site, "/runs")
    wait(driver, lambda d: len(rows(d)) == len(site["runs"]))
    run_id = site["trials"][2]
    next(tr for tr in rows(driver) if tr.get_attribute("data-run") == run_id).find_element(
        By.CSS_SELECTOR, "input.select-run").click()
    driver.find_element(By.ID, "tag-input").send_keys("keep")
    driver.find_element(By.ID, "add-tag").click()
    wait(driver, lambda d: d.find_element(By.ID, "message").text == "tag added")
    driver.find_element(By.ID, "mark").click()
    wait(driver, lambda d: d.find_element(By.ID, "message").text == "marked")
    attrs = site["home"] / "runs" / run_id / ".guild" / "attrs"
    assert "keep" in attrs.joinpath("tags").read_text()
    assert attrs.joinpath("marked").read_text().strip() == "true"


def test_delete_and_restore_from_the_pages(site):
    run_id = next(r["id"] for r in site["runs"] if r["label"] == "layers=3 lr=0.5")
    driver = open_page(site, f"/run/{run_id}")
    wait(driver, lambda d: d.find_elements(By.ID, "delete-run"))[0].click()
    driver.switch_to.alert.accept()
    wait(driver, lambda d: d.current_url.endswith("#/runs"), what="back to the runs")
    wait(driver, lambda d: len(rows(d)) == len(site["runs"]) - 1)
    assert not (site["home"] / "runs" / run_id).exists()
    assert (site["home"] / "trash" / "runs" / run_id).is_dir()
    driver = open_page(site, "/deleted")
    wait(driver, lambda d: len(rows(d)) == 1 and rows(d)[0].get_attribute("data-run") == run_id)
    rows(driver)[0].find_element(By.CSS_SELECTOR, "input.select-run").click()
    driver.find_element(By.ID, "restore").click()
    wait(driver, lambda d: d.find_element(By.ID, "message").text == "restored 1 run(s)")
    assert (site["home"] / "runs" / run_id).is_dir()


def test_no_script_error_on_any_page(site):
    driver = site["driver"]
    driver.get_log("browser")  # what earlier tests logged (a 400 they asked for)
    for fragment in ("/runs", "/deleted", f"/run/{site['batch']}", f"/batch/{site['batch']}", "/compare"):
        open_page(site, fragment)
        wait(driver, lambda d: d.find_element(By.ID, "main").text.strip() not in ("", "Loading…"))
        logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not logs, (fragment, logs)


def test_dependencies_link_the_upstream_run(site):
    use = next(r for r in site["runs"] if r["operation"] == "use")
    prepare = next(r for r in site["runs"] if r["operation"] == "prepare")
    driver = open_page(site, f"/run/{use['id']}")
    link = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#deps a.run-link"), what="the dependency")[0]
    assert link.get_attribute("href").endswith(f"#/run/{prepare['id']}")
    assert "data.txt" in driver.find_element(By.ID, "deps").text
    link.click()
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith("prepare "))


def test_output_of_a_running_run_is_followed(site):
    project = site["home"].parent / "project"
    out = _guild(site["home"], project, "run", "slow.py", "--background", "-y")
    assert out.returncode == 0, out.stderr
    listed = json.loads(_guild(site["home"], project, "runs", "--json").stdout)
    slow = next(r for r in listed if r["operation"] == "slow.py")
    run_dir = site["home"] / "runs" / slow["id"]
    driver = open_page(site, f"/run/{slow['id']}")
    try:
        wait(driver, lambda d: "start" in d.find_element(By.ID, "output").text, what="the first line")
        assert driver.find_element(By.ID, "output").get_attribute("data-running") == "true"
        assert "end" not in driver.find_element(By.ID, "output").text
        (run_dir / "go").touch()
        # Without a reload: the page polls the output while the run runs.
        wait(driver, lambda d: "end" in d.find_element(By.ID, "output").text, what="the line written later")
        wait(driver, lambda d: d.find_element(By.ID, "run-status").text == "completed", what="the run's end")
    finally:
        (run_dir / "go").touch()
        _guild(site["home"], project, "runs", "delete", slow["id"], "-y", "-p")
