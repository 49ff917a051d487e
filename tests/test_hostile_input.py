"""Hostile and broken input: every case of tests/hostile_cases.py is refused with a message
that names the setting and its value, before any run folder or model exists, and nothing the
user had is changed. (bench/hostile_input.py measures each case's time and memory.)"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hostile_cases import CASES, Case, argv_for, make_inputs
from lib_videoloop.backends import diffusers_backend
from lib_videoloop.cli import main
from lib_videoloop.media.store import FrameStore


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_inputs(tmp_path_factory.mktemp("hostile"))


def _fingerprint(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "out" not in p.relative_to(root).parts
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_case_is_refused_before_any_work(
    case: Case, inputs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def no_model(*_args: object) -> None:
        raise AssertionError("the model was loaded before the input was refused")

    monkeypatch.setattr(diffusers_backend, "build_tiny_pipeline", no_model)  # every case asks for tiny-random
    monkeypatch.chdir(tmp_path)
    here = dict(inputs, out=str(tmp_path / "out"))
    root = Path(inputs["image"]).parent
    before = _fingerprint(root)

    code = main(argv_for(case, here))

    message = capsys.readouterr().err
    assert code == 2, message
    assert message.startswith("error: "), message
    for part in case.expect:
        assert part in message, (part, message)
    assert len(message) < 1500, "a message quotes values only up to a short length"
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "a refused run leaves no run folder"
    assert not (tmp_path / "pwned").exists()
    assert _fingerprint(root) == before, "the user's files are unchanged"


# -- handled correctly: a post-processing lambda after a slow generation ---------------------


def test_a_post_processing_lambda_gets_its_own_time_budget_on_every_frame(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    import time

    import numpy as np

    from lib_videoloop.backends import GenerationRequest
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine
    from lib_videoloop.schedule_sandbox import MAX_SECONDS

    class Slow:
        name = "slow"

        def check(self, uses_subseed: bool, uses_mask: bool) -> None:
            pass

        def generate(self, request: GenerationRequest) -> list[np.ndarray]:
            time.sleep(MAX_SECONDS * 1.5)  # longer than one evaluation's budget
            return [request.init_image] * request.image_count

    settings = Settings(
        input_directory=inputs["image"],
        output_directory=str(tmp_path),
        max_frames=2,
        loop_n=1,
        image_post_processing_schedule="lambda img: img.filter(ImageFilter.SMOOTH) if loop_i == 1 else img",
    )
    result = Engine(settings, Slow()).run()
    assert len(result.seeds) == 2


# -- resume: damaged, missing or contested run folders -------------------------------------


@pytest.fixture(scope="module")
def finished_run(inputs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    argv = ["run", inputs["image"], "-o", str(out), "--model", "tiny-random", "--max_frames", "3", "--loop_n", "1"]
    argv += ["--steps", "2", "--denoising_strength", "1", "--seed", "5", "--save_every_loop"]
    assert main(argv) == 0
    (root,) = out.iterdir()
    return root


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / run.name))


def _resume(root: Path, *extra: str) -> int:
    return main(["run", "--resume", str(root), *extra])


def test_resume_with_a_damaged_settings_file_names_it(finished_run: Path, tmp_path: Path, capsys) -> None:
    root = _copy(finished_run, tmp_path)
    (root / "settings.json").write_text('{"loop_n": 2, "run": {"frame_co')
    assert _resume(root) == 2
    message = capsys.readouterr().err
    assert "settings.json" in message and "damaged" in message


def test_resume_redoes_a_zero_byte_frame_and_gets_it_back_exactly(finished_run: Path, tmp_path: Path) -> None:
    root = _copy(finished_run, tmp_path)
    frame = root / "loop_001" / "000002.png"
    original = FrameStore.open(finished_run).read_frame("loop_001", 1)
    frame.write_bytes(b"")
    assert _resume(root) == 0  # no --model: the recorded tiny-random is used
    assert (FrameStore.open(root).read_frame("loop_001", 1) == original).all()


def test_resume_rebuilds_a_lost_manifest_without_redoing_frames(finished_run: Path, tmp_path: Path) -> None:
    root = _copy(finished_run, tmp_path)
    (root / "manifest.jsonl").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in (root / "loop_001").iterdir()}
    assert _resume(root) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (root / "loop_001").iterdir()} == stamps
    assert FrameStore.open(root).folder_complete("loop_001")


def test_resume_refuses_setting_flags_it_would_ignore(finished_run: Path, tmp_path: Path, capsys) -> None:
    root = _copy(finished_run, tmp_path)
    assert _resume(root, "--loop_n", "5") == 2
    message = capsys.readouterr().err
    assert "--loop_n" in message and "cannot be given with --resume" in message


def test_a_run_folder_in_use_is_not_resumed_twice(finished_run: Path, tmp_path: Path, capsys) -> None:
    root = _copy(finished_run, tmp_path)
    holder = FrameStore.open(root)
    holder.lock()
    try:
        assert _resume(root) == 2
    finally:
        holder.unlock()
    assert "in use by another run" in capsys.readouterr().err
    assert _resume(root) == 0


def test_resume_with_another_model_warns_and_keeps_the_first_on_record(
    finished_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from lib_videoloop.backends.tiny import build_tiny_pipeline

    other = tmp_path / "other-model"
    build_tiny_pipeline().save_pretrained(other)
    root = _copy(finished_run, tmp_path)
    (root / "loop_001" / "000003.png").write_bytes(b"")
    assert _resume(root, "--model", str(other)) == 0
    assert "will not match" in caplog.text
    recorded = json.loads((root / "settings.json").read_text())
    assert recorded["run"]["models"] == ["diffusers:tiny-random", f"diffusers:{other}"]
