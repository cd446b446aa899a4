"""The built documentation site renders in a real browser: headless Chromium driven by selenium.

Run after building the site::

    mkdocs build --strict && pytest -m site -n 0 tests/docs/test_site.py

Why selenium and not ``chromium --dump-dom``: a dump shows the markup, not whether the browser
decoded an image or laid out a formula. Through selenium the test asks the browser itself
(``naturalWidth`` of each image, the rendered size of an element). Chromium and its driver come
from Debian (``apt-get install chromium chromium-driver``); selenium is told where the driver is,
so it never tries to download one.

The tests skip, with the reason, when ``site/`` was not built or Chromium, its driver or selenium
is missing — except under CI (``CI`` set), where a missing piece is a failure: CI must run them.
"""

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.site

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "site"
COURSE_STEMS = ["01_what_is_lambda", "02_llc_estimator", "03_deep_linear_networks", "04_tms",
                "05_icl_stages", "06_susceptibilities", "07_gridworld_and_patterning",
                "08_your_own_network"]


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser test)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not (SITE / "index.html").is_file():
        _missing("site/ was not built: run `mkdocs build --strict` first")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        _missing("headless Chromium is missing: apt-get install -y chromium chromium-driver")
    try:
        from selenium import webdriver
    except ImportError:
        _missing("selenium is missing: pip install -e '.[docs]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(browser, relative: str):
    page = SITE / relative
    assert page.is_file(), f"{relative} is not in the built site"
    browser.get(page.as_uri())
    return browser


def _images(browser) -> list[dict]:
    """Every <img> of the page's content as the browser sees it (decoded size, source)."""
    return browser.execute_script("""
        return Array.from(document.querySelectorAll('article img')).map(img => ({
            src: img.getAttribute('src') || '', complete: img.complete,
            width: img.naturalWidth, height: img.naturalHeight}));
    """)


def _broken(images: list[dict]) -> list[str]:
    return [image["src"][:80] for image in images if not (image["complete"] and image["width"] > 0)]


def test_front_page_renders_the_readme_with_its_figures(browser):
    _open(browser, "index.html")
    assert "toymodels" in browser.title
    heading = browser.find_element("css selector", "article h1").text
    assert "SLT toy models with exact theory checks" in heading  # the README's title
    text = browser.find_element("css selector", "article").text
    assert "The LLC in five lines" in text and "Quick start" in text
    images = _images(browser)
    assert any(image["src"].endswith("figures/validation.png") for image in images)
    assert _broken(images) == []  # every figure the README shows was found and decoded
    nav = browser.find_element("css selector", "nav.md-nav--primary").get_attribute("textContent")
    for section in ("Course", "Theory", "API reference"):
        assert section in nav


def test_course_page_shows_its_figures(browser):
    for stem in COURSE_STEMS:  # every notebook of the course was built into a page
        assert (SITE / "course" / "executed" / stem / "index.html").is_file(), stem
    _open(browser, f"course/executed/{COURSE_STEMS[0]}/index.html")
    images = _images(browser)
    figures = [image for image in images if image["src"].startswith("data:image/png")]
    assert figures, "the executed notebook shows no figure"
    assert _broken(images) == []
    assert all(image["width"] >= 100 and image["height"] >= 100 for image in figures)
    # the notebook's code is shown beside its output
    assert browser.find_elements("css selector", ".jp-CodeCell, .jp-InputArea, .highlight")


def test_api_page_documents_estimate_llc(browser):
    _open(browser, "api/toymodels/index.html")
    entry = browser.find_element("id", "toymodels.estimate_llc")
    assert entry.is_displayed() and "estimate_llc" in entry.text
    section = entry.find_element("xpath", "following-sibling::div[contains(@class, 'doc-contents')]")
    assert "nβ (E[L(w)] − L(w*))" in section.get_attribute("textContent")  # the docstring's formula
    for name in ("toymodels.LLCResult", "toymodels.calibrate", "toymodels.susceptibilities"):
        assert browser.find_elements("id", name), name


def test_theory_formulas_are_typeset(browser):
    _open(browser, "theory/llc/index.html")
    sizes = browser.execute_script("""
        return Array.from(document.querySelectorAll('article math')).map(m => {
            const box = m.getBoundingClientRect(); return [box.width, box.height]; });
    """)
    assert len(sizes) >= 10
    assert all(width > 0 and height > 0 for width, height in sizes)
    assert "$" not in browser.find_element("css selector", "article").text  # no raw LaTeX left
