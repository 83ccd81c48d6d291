"""The audit report in a real browser: Debian's headless Chromium driven by selenium.

Skipped (with the reason) only when chromium/chromedriver or selenium is not installed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from quco.analyze import Analyzer
from quco.audit.report import build_report
from quco.audit.runner import Auditor, run_audit
from quco.audit.verdicts import default_judge
from quco.testing import FakeCorpus, FakeExtractor

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]

CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,900",  # a laptop screen
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    docs = ["Paris is the capital of France.", "Berlin is the capital of Germany.", "Rome is in Italy."]
    cities = ["Paris", "Berlin", "Rome", "Madrid"]
    countries = ["France", "Germany", "Italy"]
    src = tmp / "in.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for i in range(30):
            c, k = cities[i % 4], countries[i % 3]
            f.write(
                json.dumps(
                    {"question": f"What is the capital of {k}?", "answer": f"{c} is in {k}.", "label": i % 2}
                )
                + "\n"
            )
        f.write("{broken\n")
    auditor = Auditor(Analyzer(FakeExtractor(), FakeCorpus(docs)), default_judge(model=False))
    out = tmp / "out.jsonl"
    run_audit(src, out, auditor, batch_size=8, progress=False)
    return build_report(out, tmp / "report.html", top=25)


@pytest.fixture(scope="module")
def driver() -> Any:
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="quco-chromium-")
    for a in (*CHROME_ARGS, f"--user-data-dir={profile}"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _column(driver: Any, i: int) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#answers tbody tr')).map(r => r.cells[arguments[0]].textContent.trim())",
        i,
    )


def test_report_shows_summary_table_and_figures(driver: Any, report: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.get(report.as_uri())
    assert driver.title.startswith("quco audit")
    summary = driver.find_element(By.CSS_SELECTOR, ".cards").text
    assert "30" in summary and "answers audited" in summary and "bad rows skipped" in summary
    assert "flagged by quco" in summary

    # figures: every image decoded and laid out with a non-zero size
    imgs = driver.find_elements(By.CSS_SELECTOR, "figure img")
    assert len(imgs) == 4  # risk histogram, ROC, reliability, coverage histogram
    for img in imgs:
        w, h, natural = driver.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height, arguments[0].naturalWidth];",
            img,
        )
        assert w > 100 and h > 100 and natural > 0

    # the coverage section: its histogram and the flag rate per coverage band
    assert driver.find_element(By.CSS_SELECTOR, 'img[alt="coverage histogram"]').is_displayed()
    bands = driver.find_elements(By.CSS_SELECTOR, "table.coverage tbody tr")
    assert bands and sum(int(r.find_elements(By.TAG_NAME, "td")[1].text.replace(",", "")) for r in bands) == 30

    # the metrics and the riskiest answers are there, with highlighted entities
    assert (
        "ROC-AUC"
        in driver.find_element(By.ID, "metrics").find_element(By.XPATH, "following-sibling::table").text
    )
    assert len(driver.find_elements(By.CSS_SELECTOR, ".answer mark.ent")) > 10

    # the table: 25 rows, sorted by risk; clicking a header sorts by it
    rows = driver.find_elements(By.CSS_SELECTOR, "#answers tbody tr")
    assert len(rows) == 25
    heads = driver.find_elements(By.CSS_SELECTOR, "#answers thead th")
    names = [h.text.strip(" ↕↑↓") for h in heads]
    rank = _column(driver, 0)
    assert rank == [str(i) for i in range(1, 26)]
    heads[names.index("answer")].click()
    answers = _column(driver, names.index("answer"))
    assert answers == sorted(answers, key=str.lower) and _column(driver, 0) != rank
    heads[names.index("rank")].click()
    heads[names.index("rank")].click()  # second click: descending
    assert _column(driver, 0) == [str(i) for i in range(25, 0, -1)]

    # readable on a laptop screen: the page does not scroll sideways
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 1366
