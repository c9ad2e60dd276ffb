"""The Prefect UI in a real browser: a job's flow-run page shows its Qiskit Serverless status.

Headless Debian chromium driven through chromedriver (selenium). Without them the test skips; with
``QSFLOW_REQUIRE_BROWSER=1`` (as .ci/run sets) it fails instead. ``scripts/browser.sh`` installs them.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from serverless_compat import QiskitFunction

from conftest import PROGRAMS

pytestmark = pytest.mark.browser
STATUS = "RUNNING: WAITING_FOR_QPU"
DEADLINE = 240


@pytest.fixture
def browser():
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed (bash scripts/browser.sh installs them)"
        if os.environ.get("QSFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"QSFLOW_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_flow_run_page_shows_the_detailed_status(client, browser, tmp_path):
    fn = client.upload(QiskitFunction(title="ui-waiting", entrypoint="wait_for_qpu.py",
                                      working_dir=str(PROGRAMS / "ui")))
    job = fn.run()
    try:
        deadline = time.monotonic() + DEADLINE
        while (current := job.status()) != STATUS:
            assert current not in {"DONE", "ERROR", "CANCELED"} and time.monotonic() < deadline, current
            time.sleep(0.5)
        ui = client.host.removesuffix("/api")
        browser.get(f"{ui}/runs/flow-run/{job.job_id}")
        text = ""
        while STATUS not in text:  # the UI is a single-page app: wait for it to render the run
            assert time.monotonic() < deadline, f"{STATUS!r} not on the page; it shows: {text[:500]!r}"
            time.sleep(1)
            text = browser.find_element("tag name", "body").text
        assert "ui-waiting" in text  # the function is the flow
        shot = tmp_path / "flow-run.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        job.stop()
