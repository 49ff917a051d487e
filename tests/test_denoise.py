"""FastDVDNet: exact against the reference's golden vectors, streaming, tiled, in the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lib_videoloop.config import Settings
from lib_videoloop.denoise import denoise_fastdvdnet
from lib_videoloop.denoise.fastdvdnet import SequenceDenoiser, load_model
from lib_videoloop.denoise.weights import WEIGHTS_SHA256, WEIGHTS_URL
from lib_videoloop.engine import Engine
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.store import FrameStore

DATA = Path(__file__).parent / "data" / "fastdvdnet"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return dict(np.load(DATA / "fastdvdnet_golden.npz"))


@pytest.fixture(scope="module")
def weights_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random weights saved exactly as the published model.pth is laid out ("module." keys)."""
    state = np.load(DATA / "fastdvdnet_random_weights.npz")
    path = tmp_path_factory.mktemp("w") / "model.pth"
    torch.save({k: torch.from_numpy(state[k]) for k in state}, path)
    return path


def test_window_output_matches_the_reference(golden, weights_pth: Path) -> None:
    model = load_model(weights_pth)
    with torch.inference_mode():
        out = model(torch.from_numpy(golden["window_input"]), torch.from_numpy(golden["window_noise_map"])).numpy()
    assert np.abs(out - golden["window_output"]).max() <= 1e-4


def test_sequence_matches_the_reference_with_odd_sizes_and_mirrored_borders(golden, weights_pth: Path) -> None:
    noisy = golden["noisy"].transpose(0, 2, 3, 1)  # (T, H, W, 3), not clipped
    out = denoise_fastdvdnet(noisy, float(golden["noise_std"]), weights_pth, device="cpu")
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert np.abs(out.transpose(0, 3, 1, 2) - golden["denoised"]).max() <= 1e-4


def test_weights_load_without_prefix_and_from_safetensors(golden, weights_pth: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = {k.removeprefix("module."): v for k, v in torch.load(weights_pth, weights_only=True).items()}
    bare = tmp_path / "bare.pth"
    torch.save(state, bare)
    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    x, nm = torch.from_numpy(golden["window_input"]), torch.from_numpy(golden["window_noise_map"])
    with torch.inference_mode():
        for path in (bare, st):
            assert np.abs(load_model(path)(x, nm).numpy() - golden["window_output"]).max() <= 1e-4
    junk = tmp_path / "junk.pth"
    junk.write_text("<html>not found</html>")
    with pytest.raises(VideoLoopError, match="fastdvdnet_weights"):
        load_model(junk)


def test_each_first_stage_result_is_computed_once(weights_pth: Path) -> None:
    model = load_model(weights_pth)
    calls = {"temp1": 0, "temp2": 0}
    model.temp1.register_forward_hook(lambda _m, _i, o: calls.__setitem__("temp1", calls["temp1"] + o.shape[0]))
    model.temp2.register_forward_hook(lambda _m, _i, o: calls.__setitem__("temp2", calls["temp2"] + o.shape[0]))
    frames = np.random.default_rng(0).random((40, 16, 24, 3), dtype=np.float32)
    list(SequenceDenoiser(model, device="cpu").stream(iter(frames), 40, 0.1))
    assert calls["temp2"] == 40
    # 38 interior triples (t-1, t, t+1) plus two mirrored ones at each end; the reference runs 120.
    assert calls["temp1"] == 40 + 2  # 82 block passes for 40 frames, against the reference's 160


def test_tiles_give_the_same_result_as_whole_frames(weights_pth: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lib_videoloop.denoise import fastdvdnet

    model = load_model(weights_pth)
    frames = np.random.default_rng(1).random((4, 100, 128, 3), dtype=np.float32)  # 2x2 tiles of 64 pixels

    def largest_seam_error() -> float:
        whole = SequenceDenoiser(model, device="cpu").stream(iter(frames), 4, 0.15)
        tiled = SequenceDenoiser(model, device="cpu", max_tile_pixels=64 * 64).stream(iter(frames), 4, 0.15)
        return max(float(np.abs(a - b).max()) for a, b in zip(whole, tiled, strict=True))

    # Equal up to float32 rounding, which differs with the CPU's kernels (the golden data's bound).
    assert largest_seam_error() <= 1e-4
    monkeypatch.setattr(fastdvdnet, "TILE_MARGIN", 4)  # far less than the receptive field
    assert largest_seam_error() > 1e-2, "with too small an overlap the seams show"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_half_precision_is_close_to_float32(golden, weights_pth: Path) -> None:
    noisy = golden["noisy"].transpose(0, 2, 3, 1)
    cpu = denoise_fastdvdnet(noisy, float(golden["noise_std"]), weights_pth, device="cpu")
    gpu = denoise_fastdvdnet(noisy, float(golden["noise_std"]), weights_pth, device="cuda")
    assert np.abs(cpu - gpu).max() <= 1e-2


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


@pytest.mark.slow
def test_ten_thousand_frames_stream_with_flat_memory(weights_pth: Path) -> None:
    model = load_model(weights_pth)
    rng = np.random.default_rng(2)
    base = rng.random((64, 64, 3), dtype=np.float32)
    frames = (base + np.float32(0.01 * (i % 7)) for i in range(10_000))
    rss = {}
    for i, _ in enumerate(SequenceDenoiser(model, device="cpu").stream(frames, 10_000, 0.1)):
        if i in (1_000, 9_999):
            rss[i] = _rss_mb()
    assert len(rss) == 2
    assert rss[9_999] - rss[1_000] < 30, rss


def test_missing_weights_stop_the_run_before_any_generation(
    tmp_path: Path, bikes: Path, tiny_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lib_videoloop.denoise import weights

    monkeypatch.setattr(weights, "EXTENSION_MODELS", tmp_path / "nothing")
    settings = Settings(
        input_directory=str(bikes),
        output_directory=str(tmp_path / "out"),
        video_post_process_method="FastDVDNet",
        max_frames=3,
    )
    with pytest.raises(VideoLoopError) as e:
        Engine(settings, tiny_backend).run()
    text = str(e.value)
    assert WEIGHTS_URL in text and WEIGHTS_SHA256 in text and "FastDVDNet" in text
    assert not (tmp_path / "out").exists()


def test_engine_pass_after_every_loop(tmp_path: Path, bikes: Path, tiny_backend, weights_pth: Path) -> None:
    settings = Settings(
        input_directory=str(bikes),
        output_directory=str(tmp_path / "out"),
        width=64,
        height=48,
        max_frames=4,
        loop_n=2,
        steps=4,
        denoising_strength=0.5,
        seed=3,
        video_post_process_method="FastDVDNet",
        fastdvdnet_weights=str(weights_pth),
        video_post_process_alpha=0.5,
        fastdvdnet_noise_sigma=30,
    )
    result = Engine(settings, tiny_backend).run()
    store = FrameStore.open(result.run_dir)
    for loop in ("loop_001", "loop_002"):
        assert store.folder_complete(f"{loop}_denoised")
        changed = [np.abs(store.read_frame(loop, i) - store.read_frame(f"{loop}_denoised", i)).mean() for i in range(4)]
        assert min(changed) > 1e-3
    # Seeded noise: a repeat gives the same frames.
    again = Engine(
        Settings.from_dict(store.read_settings() | {"output_directory": str(tmp_path / "again")}), tiny_backend
    ).run()
    other = FrameStore.open(again.run_dir)
    assert all(
        np.array_equal(store.read_frame("loop_002_denoised", i), other.read_frame("loop_002_denoised", i))
        for i in range(4)
    )
