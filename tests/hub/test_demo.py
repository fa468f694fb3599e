"""Specification of the demo page (`hf-ser demo`, hf_ser/hub/templates/app.py): the Space's app without hf-ser gives
hf-ser's numbers, and the served page, driven in a real headless Chromium, shows what `hf-ser predict` says."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import EMODB_DIR, REPO_ROOT, requires_emodb, run_without_hf_ser
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from hf_ser.cli import main as cli_main
from hf_ser.data.audio import load_audio, probe_audio
from hf_ser.data.demo_corpus import synthesize
from hf_ser.hub.demo import APP_FILE
from hf_ser.inference.predict import EmotionClassifier

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SERVER_START_SECONDS = 120  # gradio's import and the model load on 2 busy cores
PAGE_SECONDS = 60  # the longest wait for anything on the page


def hf_ser_predict(capsys, model, audio: Path) -> dict:
    """`hf-ser predict MODEL AUDIO --format json`: the file's prediction."""
    capsys.readouterr()
    assert cli_main(["predict", str(model), str(audio), "--format", "json", "--no-progress"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
    return prediction


SPACE_APP_SCRIPT = """
    import importlib.util, json, os
    spec = importlib.util.spec_from_file_location("app", {app!r})
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    result = {{}}
    for architecture, folder in {models!r}.items():
        os.environ["HF_SER_MODEL"] = folder  # what `hf-ser push --space` sets in the Space
        backend = app.TransformersBackend(app.model_source())
        long, resampled = backend.decode("speech.flac"), backend.decode("speech_44k.wav")
        probabilities, plot = app.analyse(backend, "speech.flac", window=2.0, hop=1.0)
        result[architecture] = {{
            "waveforms": [long[::97].tolist(), resampled[::97].tolist()],
            "probabilities": [probabilities, dict(zip(backend.labels, backend.probabilities([resampled])[0].tolist()))],
            "segments": [[s["start"], s["end"], *s["probabilities"]] for s in backend.timeline(long, 2.0, 1.0)],
            "plot": os.path.isfile(plot),
            "dimensional": backend.dimensional,
        }}
    try:
        backend.decode("notes.txt")
    except ValueError as error:
        result["notes.txt"] = str(error)
    print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def dimensional_models(tmp_path_factory) -> dict[str, Path]:
    """Saved tiny dimensional models (arousal, valence, dominance; random weights) of both architectures."""
    from dimensional_look_alikes import save_tiny_dimensional_model

    root = tmp_path_factory.mktemp("dimensional")
    return {
        family: save_tiny_dimensional_model(family, root / f"{family}-dimensional")
        for family in ("wav2vec2-ser", "ser-cnn")
    }


def test_the_space_app_without_hf_ser_decodes_and_predicts_as_hf_ser_does(
    tiny_model_dir, cnn_model_dir, dimensional_models, tmp_path
):
    """What a Space runs (transformers, soundfile, soxr; no hf-ser): hf-ser's waveforms, probabilities and timeline
    windows, for both architectures; for a dimensional model of each, hf-ser's values (no softmax) and their
    timeline."""
    models = {"wav2vec2-ser": str(tiny_model_dir), "ser-cnn": str(cnn_model_dir)}
    models |= {f"{family} dimensional": str(folder) for family, folder in dimensional_models.items()}
    rng = np.random.default_rng(3)
    clip = np.concatenate([synthesize(emotion, 150.0, (700.0, 1400.0), rng) for emotion in ("angry", "sad", "happy")])
    soundfile.write(tmp_path / "speech.flac", np.stack([clip, 0.5 * clip], axis=1)[:52_800], 16000)  # 3.3 s stereo
    soundfile.write(tmp_path / "speech_44k.wav", load_audio(tmp_path / "speech.flac", 44100), 44100)  # resampled
    (tmp_path / "notes.txt").write_text("not audio")
    result = json.loads(run_without_hf_ser(SPACE_APP_SCRIPT.format(app=str(APP_FILE), models=models), cwd=tmp_path))
    waveforms = [load_audio(tmp_path / name) for name in ("speech.flac", "speech_44k.wav")]
    for architecture, folder in models.items():
        space, classifier = result[architecture], EmotionClassifier(folder)
        assert space["dimensional"] == classifier.dimensional == architecture.endswith("dimensional")
        for decoded, waveform in zip(space["waveforms"], waveforms):
            np.testing.assert_allclose(decoded, waveform[::97], atol=1e-6)
        for outputs, waveform in zip(space["probabilities"], waveforms):
            assert list(outputs) == classifier.labels
            np.testing.assert_allclose(list(outputs.values()), classifier.probabilities([waveform])[0], atol=1e-5)
            if classifier.dimensional:  # the raw values: a softmax would make them sum to 1
                assert abs(sum(outputs.values()) - 1.0) > 1e-3
        segments = classifier.timeline(waveforms[0], 2.0, 1.0)
        assert len(segments) == 3  # 0-2, 1-3 and 1.3-3.3 s
        values = [[(s.dimensions or s.probabilities)[label] for label in classifier.labels] for s in segments]
        np.testing.assert_allclose(
            space["segments"], [[s.start, s.end, *row] for s, row in zip(segments, values)], atol=1e-5
        )
        assert space["plot"]  # 3.3 s is longer than one 2 s window: a timeline PNG
    assert "cannot decode audio" in result["notes.txt"]


def test_without_gradio_the_command_names_the_extra_that_installs_it(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` fails as it does where it is not installed
    assert cli_main(["demo", str(tiny_model_dir)]) == 2
    assert (
        "gradio is not installed; it comes with the `demo` extra: pip install 'hf-ser[demo]'" in capsys.readouterr().err
    )


# ---- the served page in a real browser ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(model: Path, log: Path):
    """`hf-ser demo MODEL` on 127.0.0.1 in its own process (output in `log`), stopped on exit. Yields (process, url,
    log file)."""
    port = free_port()
    command = [sys.executable, "-m", "hf_ser.cli", "demo", str(model), "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        yield server, f"http://127.0.0.1:{port}/", log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def answering(demo_server) -> str:
    """The page's address, once the server answers (at most SERVER_START_SECONDS after it was started)."""
    server, url, log = demo_server
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if server.poll() is not None:
            pytest.fail(f"hf-ser demo exited with status {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return url
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"hf-ser demo did not answer on {url} within {SERVER_START_SECONDS} s:\n{log.read_text()}")
        time.sleep(0.5)


# Both servers start with this module's first test: their slow start (gradio's import, the model load) overlaps the
# tests that do not need them.
@pytest.fixture(scope="module", autouse=True)
def dimensional_demo_server(dimensional_models, tmp_path_factory):
    """`hf-ser demo` of the tiny dimensional Wav2Vec2SER."""
    log = tmp_path_factory.mktemp("dimensional_demo") / "server.log"
    with serving(dimensional_models["wav2vec2-ser"], log) as server:
        yield server


@pytest.fixture(scope="module", autouse=True)
def demo_server(tiny_run, tmp_path_factory):
    """`hf-ser demo` of the tiny run (a classifier)."""
    with serving(tiny_run, tmp_path_factory.mktemp("demo") / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def demo_url(demo_server):
    return answering(demo_server)


@pytest.fixture(scope="module")
def dimensional_demo_url(dimensional_demo_server):
    return answering(dimensional_demo_server)


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium under selenium. A browser that cannot start fails the test, with the reason."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).is_file()]
    if missing:
        pytest.fail(f"{missing} not found: install Debian's chromium and chromium-driver (.ci/run does)")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    arguments = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"]
    # a microphone for the recording test: Chromium's fake capture device (a beep a second), allowed without asking
    arguments += ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    for argument in arguments:
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as error:  # selenium's errors carry chromium's own reason
        pytest.fail(f"headless chromium could not start: {error}")
    driver.set_page_load_timeout(PAGE_SECONDS)
    yield driver
    driver.quit()


def upload(driver, url: str, path: Path) -> None:

    driver.get(url)
    field = WebDriverWait(driver, PAGE_SECONDS).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]"))
    )
    field.send_keys(str(path))


def wait_for_text(driver, css: str, timeout: float = PAGE_SECONDS) -> str:
    """The text of the first element matching `css` once it has any."""

    def text(driver):
        found = [element.text.strip() for element in driver.find_elements(By.CSS_SELECTOR, css)]
        return next((value for value in found if value), False)

    return WebDriverWait(driver, timeout).until(text)


def long_emodb_file() -> Path:
    """The first EmoDB file longer than 3 s: longer than one 2 s window, so the page shows a timeline."""
    return next(path for path in sorted((EMODB_DIR / "wav").glob("*.wav")) if probe_audio(path).duration > 3.0)


def assert_timeline_shown(driver) -> None:
    (timeline,) = driver.find_elements(By.CSS_SELECTOR, "#timeline img")
    assert driver.execute_script("return arguments[0].naturalWidth", timeline) > 500  # the PNG has loaded


def save_screenshot(driver, path) -> None:
    driver.save_screenshot(str(path))
    assert Path(path).stat().st_size > 10_000


@requires_emodb()
def test_the_page_shows_the_top_label_that_hf_ser_predict_gives_for_an_emodb_file(
    demo_url, browser, tiny_run, capsys, tmp_path
):

    audio = long_emodb_file()
    expected = hf_ser_predict(capsys, tiny_run, audio)
    upload(browser, demo_url, audio)
    assert wait_for_text(browser, LABEL_CSS) == expected["label"]
    assert_timeline_shown(browser)  # longer than one 2 s window
    save_screenshot(browser, os.environ.get("HF_SER_DEMO_SCREENSHOT", tmp_path / "demo_page.png"))


@requires_emodb()
def test_a_dimensional_models_page_shows_the_values_hf_ser_predict_gives_for_an_emodb_file(
    dimensional_demo_url, browser, dimensional_models, capsys, tmp_path
):
    audio = long_emodb_file()
    expected = hf_ser_predict(capsys, dimensional_models["wav2vec2-ser"], audio)["dimensions"]
    upload(browser, dimensional_demo_url, audio)
    wait_for_text(browser, VALUES_CSS)
    names, values = (
        [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, f"#dimensions {cell}")] for cell in ("th", "td")
    )
    assert names == ["arousal", "valence", "dominance"]
    for name, shown in zip(names, values, strict=True):  # to the 3 decimals the page shows
        assert float(shown) == pytest.approx(expected[name], abs=5e-4 + 1e-9), name
    assert "Dimensions: arousal, valence, dominance (the model's values" in browser.page_source
    assert browser.find_elements(By.CSS_SELECTOR, "#dimension_bars canvas, #dimension_bars svg")  # the bars
    assert "%" not in browser.find_element(By.TAG_NAME, "body").text  # values, not percentages
    assert not browser.find_elements(By.CSS_SELECTOR, LABEL_CSS)
    assert_timeline_shown(browser)
    save_screenshot(browser, os.environ.get("HF_SER_DEMO_DIMENSIONAL_SCREENSHOT", tmp_path / "dimensional.png"))


def test_a_microphone_recording_gets_the_label_hf_ser_predict_gives_for_the_recorded_file(
    demo_url, browser, tiny_run, capsys, tmp_path
):
    browser.get(demo_url)
    WebDriverWait(browser, PAGE_SECONDS).until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "button[aria-label='Record audio']"))
    ).click()
    WebDriverWait(browser, PAGE_SECONDS).until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "button.record-button"))
    ).click()
    time.sleep(2.5)  # record 2.5 s of the fake microphone
    browser.find_element(By.CSS_SELECTOR, "button.stop-button").click()
    label = wait_for_text(browser, LABEL_CSS)
    # what the page sent to the server is downloadable from it: predict that file with `hf-ser predict`
    (link,) = [
        a for a in browser.find_elements(By.CSS_SELECTOR, "a[download]") if a.get_attribute("href").endswith(".wav")
    ]
    recording = tmp_path / "recording.wav"
    with urllib.request.urlopen(link.get_attribute("href"), timeout=PAGE_SECONDS) as response:
        recording.write_bytes(response.read())
    assert probe_audio(recording).duration > 1.0
    assert label == hf_ser_predict(capsys, tiny_run, recording)["label"]


@pytest.mark.parametrize(
    "page, name, message",
    [
        ("demo_url", "notes.txt", "Invalid file type: notes.txt"),  # refused by the page itself (not an audio type)
        ("demo_url", "notes.wav", "notes.wav is not audio this demo can read: cannot decode audio"),  # by the app
        ("dimensional_demo_url", "notes.wav", "notes.wav is not audio this demo can read: cannot decode audio"),
    ],
)
def test_a_non_audio_upload_gets_a_clear_message_on_the_page(request, browser, tmp_path, page, name, message):
    notes = tmp_path / name
    notes.write_text("These are meeting notes, not speech.\n")
    upload(browser, request.getfixturevalue(page), notes)
    assert message in wait_for_text(browser, MESSAGE_CSS)
    assert "Traceback" not in browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, f"{LABEL_CSS}, {VALUES_CSS}")


LABEL_CSS = "[data-testid=label-output-value]"  # gr.Label's top class
MESSAGE_CSS = "[data-testid=toast-body]"  # gradio's messages (gr.Error, gr.Warning, the page's own)
VALUES_CSS = "#dimensions td"  # a dimensional model's values (the table's header row names the dimensions)
