"""The page in a real browser: Debian's Chromium, headless, driven by Selenium."""

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from serve.sessions import SessionManager
from videollama3.loading import build_session

from .conftest import live_service

OUTPUTS = Path(__file__).resolve().parents[2] / "outputs"


@pytest.fixture
def server(tiny, videos, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "bikes.mp4").write_bytes((videos / "bikes.mp4").read_bytes())
    with live_service(SessionManager(build_session(*tiny, "hierarchical"), "hierarchical", {}, media)) as url:
        yield url


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService("/usr/bin/chromedriver"))
    driver.set_window_size(1100, 1000)
    yield driver
    driver.quit()


def test_start_a_sample_ask_and_see_the_answer_and_the_timeline(server, browser):
    browser.get(server + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: [o.text for o in Select(d.find_element(By.ID, "sample")).options] == ["bikes.mp4"])
    browser.find_element(By.ID, "start").click()
    # the stream plays at its own pace: frames appear in the timeline as it advances
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline .mark")) >= 3)
    assert browser.find_element(By.ID, "player").get_attribute("src").endswith("/media/bikes.mp4")
    browser.find_element(By.ID, "question").send_keys("What is moving?")
    browser.find_element(By.ID, "ask").click()
    answer = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#answers li.answer"))[0]
    assert "What is moving?" in answer.text and answer.find_element(By.CSS_SELECTOR, ".time").text.endswith(" s]")
    asked_at = float(answer.find_element(By.CSS_SELECTOR, ".time").text.strip("[] s"))
    wait.until(lambda d: "ended" in d.find_element(By.ID, "status").text)
    tiers = [row.get_attribute("data-tier") for row in browser.find_elements(By.CSS_SELECTOR, "#timeline .tier")]
    times = [m.get_attribute("data-time") for m in browser.find_elements(By.CSS_SELECTOR, "#timeline .mark")]
    assert tiers == ["short", "mid", "long"] and "9" in times  # the last frame of the 10 s video, held
    assert 1.0 <= asked_at <= 9.0 and "10 frames seen" in browser.find_element(By.ID, "status").text
    OUTPUTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(OUTPUTS / "serve_page.png"))


def test_a_sample_whose_name_holds_url_characters_plays(tiny, videos, tmp_path, browser):
    """A file named with a space, "#" and "?" plays in the page: its URL is encoded, not cut at the "#"."""
    media = tmp_path / "media"
    (media / "clips").mkdir(parents=True)
    name = "clips/a clip #1?.mp4"
    (media / name).write_bytes((videos / "bikes.mp4").read_bytes())
    with live_service(SessionManager(build_session(*tiny, "hierarchical"), "hierarchical", {}, media)) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: [o.text for o in Select(d.find_element(By.ID, "sample")).options] == [name])
        browser.find_element(By.ID, "start").click()
        wait.until(lambda d: d.execute_script("return document.getElementById('player').readyState") >= 1)
        player = browser.find_element(By.ID, "player")
        assert player.get_attribute("src").endswith("/media/clips/a%20clip%20%231%3F.mp4")
        assert browser.execute_script("return document.getElementById('player').error") is None
