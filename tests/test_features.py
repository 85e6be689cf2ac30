"""Tests of helpers.features: the front end (agreement with librosa, filterbank, shapes, devices),
batch extraction, and the feature cache."""

from __future__ import annotations

import json
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from tqdm.auto import tqdm

from helpers.data import audio

from helpers.features import cache, extract, frontend
from helpers.features.cache import load_features
from helpers.features.extract import extract_logmels, logmels_of_waveforms
from helpers.features.frontend import FeatureSettings, LogMel, logmel, mel_filterbank

#: Agreement with librosa required by docs/reference.md §2, in dB (max abs difference).
TOLERANCE_DB = 1e-3


# --------------------------------------------------------------------------------------------
# Signals and files
# --------------------------------------------------------------------------------------------
def chirp_with_noise(sr: int, noise: float, padded: bool = False, seed: int = 0) -> np.ndarray:
    """A full-length clip: linear chirp 100 Hz -> near Nyquist plus white noise, float32.

    ``padded``: the second half is zeros, as a short clip padded to the clip length, so the
    features contain -100 dB frames and frames straddling the signal's end.
    """
    n = audio.clip_samples(sr)
    t = np.arange(n) / sr
    sweep = (sr / 2 - 200) / (2 * t[-1])
    y = 0.5 * np.sin(2 * np.pi * (100 * t + sweep * t**2))
    y = y + noise * np.random.default_rng(seed).standard_normal(n)
    if padded:
        y[n // 2 :] = 0.0
    return y.astype(np.float32)


def librosa_logmel(y: np.ndarray, sr: int) -> np.ndarray:
    """The reference of docs/reference.md §2, as (time, mel)."""
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        n_fft=1024,
        hop_length=320,
        win_length=1024,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=64,
        fmin=10,
        fmax=sr / 2,
        htk=False,
        norm="slaney",
    )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T


def write_wav(path: Path, wave: np.ndarray, sr: int = 16000) -> Path:
    sf.write(str(path), wave, sr, subtype="PCM_16")
    return path


def make_clips(folder: Path, count: int = 5, seed: int = 1) -> list[Path]:
    """``count`` short 16 kHz tone+noise WAVs of different lengths (0.3 to 0.7 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        n = int(16000 * (0.3 + 0.1 * i))
        t = np.arange(n) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (300 + 200 * i) * t) + 0.02 * rng.standard_normal(n)
        paths.append(write_wav(folder / f"train_{i:05d}.wav", wave))
    return paths


def make_table(paths: list[Path]) -> pd.DataFrame:
    """A corpus table: all clips but the last in train, the last in test with label '?'."""
    rows = []
    for i, path in enumerate(paths):
        test = i == len(paths) - 1
        rows.append(
            {
                "split": "test" if test else "train",
                "filename": path.name,
                "path": str(path),
                "label": "?" if test else ["a", "b"][i % 2],
                "class_index": -1 if test else i % 2,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Log-mel values
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sr", [16000, 8000])
@pytest.mark.parametrize("noise, padded", [(1e-2, False), (1e-2, True), (1e-4, False), (0.0, True)])
def test_logmel_agrees_with_librosa(sr, noise, padded):
    # Little noise is the hard case: bands ~100 dB below the chirp, where a float32 FFT is off by
    # up to 0.2 dB. The default float64 FFT must hold the tolerance there too.
    y = chirp_with_noise(sr, noise, padded)
    ours = logmel(y, FeatureSettings(sample_rate=sr))
    reference = librosa_logmel(y, sr)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < TOLERANCE_DB
    if padded:
        assert ours.min() == pytest.approx(-100.0) and reference.min() == pytest.approx(-100.0)


@pytest.mark.parametrize("sr", [16000, 8000])
@pytest.mark.parametrize(
    "n_fft, n_mels, fmin, fmax", [(1024, 64, 10.0, None), (512, 32, 20.0, 3000.0), (2048, 128, 0.0, None)]
)
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels, fmin, fmax):
    # torchaudio's filterbank, built in float64, is librosa's to rounding; rounded to float32 (what
    # LogMel stores) the two are identical, so the features did not change when it replaced librosa's.
    fmax = sr / 2 if fmax is None else fmax
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    reference = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney", dtype=np.float64
    ).T
    assert ours.dtype == torch.float64 and ours.shape == reference.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(ours.numpy(), reference, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(ours.numpy().astype(np.float32), reference.astype(np.float32))
    module = LogMel(sample_rate=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert module.mel_basis.dtype == torch.float32
    np.testing.assert_array_equal(module.mel_basis.numpy(), reference.astype(np.float32))


def test_float64_filterbank_leaves_other_threads_and_the_default_dtype_alone():
    inside, release = threading.Event(), threading.Event()
    seen = []

    def build_and_wait():
        with frontend._Float64Factories():
            seen.append(torch.linspace(0, 1, 3).dtype)
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=build_and_wait)
    thread.start()
    try:
        assert inside.wait(10)
        assert torch.linspace(0, 1, 3).dtype == torch.float32  # this thread: unaffected
    finally:
        release.set()
        thread.join()
    assert seen == [torch.float64]
    assert mel_filterbank(16000, 1024, 64, 10.0, 8000.0).dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32 and torch.zeros(1).dtype == torch.float32
    with pytest.raises(ValueError, match="odd"):
        mel_filterbank(11025, 1024, 64, 10.0, 5512.5)


@pytest.mark.parametrize("sr", [16000, 8000])
def test_float32_fft_agrees_on_noisy_signals(sr):
    # The documented domain of the fast option: a noise floor within ~45 dB of the signal.
    y = chirp_with_noise(sr, 1e-2, padded=True)
    ours = logmel(y, FeatureSettings(sample_rate=sr, fft_precision="float32"))
    assert np.abs(ours - librosa_logmel(y, sr)).max() < TOLERANCE_DB


@pytest.mark.parametrize("sr, samples, frames", [(16000, 47860, 150), (8000, 23930, 75)])
def test_shapes_and_settings(sr, samples, frames):
    settings = FeatureSettings(sample_rate=sr)
    assert settings.clip_samples == samples
    assert settings.n_frames == frames
    assert settings.resolved_fmax == sr / 2
    module = LogMel.from_settings(settings)
    assert module.fmax == sr / 2 and module.n_fft == 1024 and module.hop_length == 320
    out = module(torch.zeros(3, samples))
    assert out.shape == (3, frames, 64)
    assert out.dtype == torch.float32
    # Silence is the floor of the log: 10 * log10(1e-10).
    assert torch.all(out == -100.0)


def test_batch_rows_equal_single_clips():
    y = np.stack([chirp_with_noise(16000, 1e-2, seed=s) for s in range(3)])
    batched = logmel(y)
    for i in range(3):
        np.testing.assert_allclose(batched[i], logmel(y[i]), atol=1e-4)


def test_logmel_rejects_wrong_rank():
    with pytest.raises(ValueError, match="batch, samples"):
        LogMel()(torch.zeros(2, 1, 47860))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("precision, noise, tolerance", [("float64", 1e-4, 1e-4), ("float32", 1e-2, 1e-3)])
def test_cuda_equals_cpu(precision, noise, tolerance):
    # float64: both FFTs are exact to ~1e-12, what remains is float32 rounding of the dB values.
    # float32: each side is within 2e-4 dB of librosa on a noisy signal, so within 1e-3 of each other.
    settings = FeatureSettings(fft_precision=precision)
    y = torch.from_numpy(np.stack([chirp_with_noise(16000, noise, padded=p) for p in (False, True)]))
    module = LogMel.from_settings(settings)
    cpu = module(y)
    cuda = module.to("cuda")(y.to("cuda")).cpu()
    assert (cpu - cuda).abs().max().item() < tolerance


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
def test_settings_key_is_stable_and_tracks_changes():
    base = FeatureSettings()
    assert base.key() == FeatureSettings().key()
    assert len(base.key()) == 12
    # Same features, same key.
    assert FeatureSettings(fmax=8000.0).key() == base.key()
    others = [
        FeatureSettings(n_mels=32),
        FeatureSettings(fmin=20.0),
        FeatureSettings(sample_rate=8000),
        FeatureSettings(hop_length=160),
        FeatureSettings(fft_precision="float32"),
    ]
    assert len({base.key(), *(s.key() for s in others)}) == 1 + len(others)
    assert FeatureSettings(**base.to_dict()) == base


def test_settings_key_changes_with_feature_version(monkeypatch):
    before = FeatureSettings().key()
    monkeypatch.setattr(frontend, "FEATURE_VERSION", frontend.FEATURE_VERSION + 1)
    assert FeatureSettings().key() != before


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample_rate": 22050}, "not supported"),
        ({"fmax": 9000.0}, "fmax"),
        ({"fft_precision": "float16"}, "fft_precision"),
    ],
)
def test_settings_reject_invalid_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureSettings(**kwargs)


# --------------------------------------------------------------------------------------------
# Extraction from files
# --------------------------------------------------------------------------------------------
def test_extract_logmels_matches_per_clip_computation(tmp_path):
    paths = make_clips(tmp_path / "wav", count=4)
    # A stereo 44.1 kHz file and one longer than a clip exercise downmix, resampling, truncation.
    t = np.arange(int(44100 * 3.5)) / 44100
    stereo = np.stack([0.2 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)], axis=1)
    paths.append(write_wav(tmp_path / "wav" / "stereo.wav", stereo, 44100))
    for sr in (16000, 8000):
        settings = FeatureSettings(sample_rate=sr)
        # batch_size 2 with 2 readers: several batches in flight, order must be kept.
        out = extract_logmels(paths, settings, batch_size=2, progress=False, num_workers=2, num_threads=1)
        assert out.shape == (len(paths), settings.n_frames, 64) and out.dtype == np.float32
        for i, path in enumerate(paths):
            expected = logmel(audio.load_clip(path, sr, settings.clip_samples), settings)
            # Not bitwise: FFT and matmul kernels may round differently for other batch sizes.
            np.testing.assert_allclose(out[i], expected, rtol=0, atol=1e-4)


def test_gpu_pipeline_code_path_runs_on_cpu(tmp_path):
    # The reader-threads-plus-device-batches path is what CUDA uses; run it on the CPU here so it
    # is tested on machines without a GPU too.
    paths = make_clips(tmp_path, count=5)
    settings = FeatureSettings()
    out = np.empty((5, 150, 64), dtype=np.float32)
    with ThreadPoolExecutor(2) as pool, tqdm(disable=True) as bar:
        load = lambda a, b: extract._load_block(paths, a, b, settings.sample_rate, settings.clip_samples)  # noqa: E731
        extract._transform_batches_on_device(
            load, len(paths), LogMel(), out, pool, bar, torch.device("cpu"), batch_size=2, num_workers=2
        )
    np.testing.assert_allclose(out, extract_logmels(paths, settings, progress=False), rtol=0, atol=1e-4)


def test_extract_logmels_restores_torch_threads_and_handles_empty_input(tmp_path):
    before = torch.get_num_threads()
    assert extract_logmels([], progress=False).shape == (0, 150, 64)
    extract_logmels(make_clips(tmp_path, count=1), progress=False, num_threads=1)
    assert torch.get_num_threads() == before


def test_extract_logmels_names_unreadable_file(tmp_path):
    paths = make_clips(tmp_path, count=2)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not a wav file")
    with pytest.raises(audio.AudioError, match="broken.wav"):
        extract_logmels(paths + [bad], progress=False)


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------
@pytest.fixture
def corpus(tmp_path):
    """(table, cache_dir, paths) of five short clips: four train, one test."""
    paths = make_clips(tmp_path / "wav", count=5)
    return make_table(paths), tmp_path / "cache", paths


@pytest.fixture
def spy(monkeypatch):
    """Counts calls of the extractor that load_features uses."""
    calls = []
    real = cache.extract_logmels

    def counting(paths, *args, **kwargs):
        calls.append(list(paths))
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(cache, "extract_logmels", counting)
    return calls


def load(table, cache_dir, split="train", settings=None, **kwargs):
    return load_features(table, split, settings or FeatureSettings(), cache_dir, "demo", progress=False, **kwargs)


def test_cache_miss_then_hit(corpus, spy):
    table, cache_dir, paths = corpus
    first = load(table, cache_dir)
    assert len(spy) == 1
    assert first.cache_path == cache_dir / "demo" / f"train-16000hz-{first.key}.npy"
    assert first.cache_path.with_suffix(".json").exists()
    assert first.features.shape == (4, 150, 64) and first.features.dtype == np.float32
    assert first.filenames == [p.name for p in paths[:4]]
    assert first.labels.dtype == np.int64 and first.labels.tolist() == [0, 1, 0, 1]
    np.testing.assert_array_equal(first.features, extract_logmels(paths[:4], progress=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean hit must not warn
        second = load(table, cache_dir)
    assert len(spy) == 1, "a cache hit must not recompute"
    assert second.key == first.key
    np.testing.assert_array_equal(second.features, first.features)
    mapped = load(table, cache_dir, mmap_mode="r")
    assert isinstance(mapped.features, np.memmap) and len(spy) == 1


def test_test_split_has_unknown_labels(corpus):
    table, cache_dir, _ = corpus
    test = load(table, cache_dir, split="test")
    assert test.labels.tolist() == [-1] and test.features.shape == (1, 150, 64)


def test_changed_setting_recomputes(corpus, spy):
    table, cache_dir, _ = corpus
    first = load(table, cache_dir)
    other = load(table, cache_dir, settings=FeatureSettings(n_mels=32))
    assert len(spy) == 2 and other.key != first.key
    assert other.features.shape == (4, 150, 32)
    eight = load(table, cache_dir, settings=FeatureSettings(sample_rate=8000))
    assert len(spy) == 3 and eight.cache_path.name.startswith("train-8000hz-")
    assert eight.features.shape == (4, 75, 64)
    # Both caches stay valid side by side.
    load(table, cache_dir)
    assert len(spy) == 3


def test_changed_audio_bytes_recompute(corpus, spy):
    table, cache_dir, paths = corpus
    first = load(table, cache_dir)
    stat = paths[1].stat()
    write_wav(paths[1], np.zeros(sf.info(str(paths[1])).frames))  # same length: only the bytes differ
    # Make sure the modification time moves even on a coarse-clock file system.
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    second = load(table, cache_dir)
    assert len(spy) == 2 and second.key != first.key
    assert np.all(second.features[1] == -100.0)
    np.testing.assert_array_equal(second.features[0], first.features[0])


def test_checksum_memo_trade_off_and_recompute(corpus, spy):
    # Documented trade-off: same size and restored mtime hide a change from the memo;
    # recompute=True re-hashes and re-extracts.
    table, cache_dir, paths = corpus
    first = load(table, cache_dir)
    stat = paths[1].stat()
    write_wav(paths[1], np.zeros(sf.info(str(paths[1])).frames))
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert paths[1].stat().st_size == stat.st_size
    assert load(table, cache_dir).key == first.key and len(spy) == 1
    load(table, cache_dir, split="test")
    fresh = load(table, cache_dir, recompute=True)
    assert len(spy) == 3 and fresh.key != first.key
    assert np.all(fresh.features[1] == -100.0)
    # Re-hashing the train files keeps the memo's entries for the other splits.
    memo = json.loads((cache_dir / "demo" / cache.CHECKSUM_MEMO).read_text())
    assert str(paths[-1].resolve()) in memo and len(memo) == len(paths)


def test_truncated_cache_is_detected_and_rebuilt(corpus, spy):
    table, cache_dir, _ = corpus
    first = load(table, cache_dir)
    data = first.cache_path.read_bytes()
    first.cache_path.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="corrupt or truncated"):
        rebuilt = load(table, cache_dir)
    assert len(spy) == 2
    np.testing.assert_array_equal(rebuilt.features, first.features)
    assert first.cache_path.read_bytes() == data


def test_overwritten_cache_bytes_are_detected(corpus, spy):
    table, cache_dir, _ = corpus
    first = load(table, cache_dir)
    data = bytearray(first.cache_path.read_bytes())
    data[-100:] = b"\x00" * 100  # same size, valid header: only the checksum can tell
    first.cache_path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="checksum"):
        load(table, cache_dir)
    assert len(spy) == 2


def test_missing_or_mismatched_sidecar_rebuilds(corpus, spy):
    table, cache_dir, _ = corpus
    first = load(table, cache_dir)
    sidecar = first.cache_path.with_suffix(".json")
    sidecar.unlink()
    with pytest.warns(UserWarning, match="sidecar .* is missing"):
        load(table, cache_dir)
    assert len(spy) == 2
    sidecar.write_text(sidecar.read_text().replace("train_00000.wav", "other.wav"))
    with pytest.warns(UserWarning, match="does not match"):
        load(table, cache_dir)
    assert len(spy) == 3
    sidecar.write_text("{ not json")
    with pytest.warns(UserWarning, match="cannot be read"):
        load(table, cache_dir)
    assert len(spy) == 4


def test_interrupted_data_write_leaves_nothing_loadable(corpus, monkeypatch):
    table, cache_dir, _ = corpus
    real_save = np.save

    def save_half_then_fail(file, array, **kwargs):
        real_save(file, array[: len(array) // 2], **kwargs)
        raise KeyboardInterrupt("interrupted mid-write")

    monkeypatch.setattr(cache.np, "save", save_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        load(table, cache_dir)
    monkeypatch.undo()
    folder = cache_dir / "demo"
    # Only the checksum memo may exist: no data file, no sidecar, no temporary file.
    assert sorted(p.name for p in folder.iterdir()) == [cache.CHECKSUM_MEMO]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load(table, cache_dir)
    assert result.features.shape == (4, 150, 64)


def test_interrupted_sidecar_write_is_rebuilt(corpus, monkeypatch, spy):
    table, cache_dir, _ = corpus

    real_write = cache.write_json_atomic

    def fail_on_sidecar(path, obj, **kwargs):
        if Path(path).name == cache.CHECKSUM_MEMO:
            return real_write(path, obj, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(cache, "write_json_atomic", fail_on_sidecar)
    with pytest.raises(RuntimeError, match="disk full"):
        load(table, cache_dir)
    assert len(spy) == 1 and any((cache_dir / "demo").glob("train-*.npy"))
    monkeypatch.setattr(cache, "write_json_atomic", real_write)
    # The data file made it, its sidecar did not: the next run must not trust it.
    with pytest.warns(UserWarning, match="sidecar"):
        result = load(table, cache_dir)
    assert len(spy) == 2 and result.cache_path.with_suffix(".json").exists()


def test_load_features_rejects_bad_tables(corpus):
    table, cache_dir, _ = corpus
    with pytest.raises(ValueError, match="class_index"):
        load(table.drop(columns="class_index"), cache_dir)
    with pytest.raises(ValueError, match="'devel'.*splits \\['test', 'train'\\]"):
        load(table, cache_dir, split="devel")


def test_logmels_of_waveforms_in_worker_blocks_equal_one_call():
    settings = FeatureSettings(sample_rate=8000)
    rng = np.random.default_rng(5)
    waves = (0.1 * rng.standard_normal((5, settings.clip_samples))).astype(np.float32)  # odd count: a short last block
    with torch.inference_mode():
        expected = LogMel.from_settings(settings)(torch.from_numpy(waves)).numpy()
    got = logmels_of_waveforms(waves, settings, num_workers=2)
    assert got.shape == expected.shape == (5, settings.n_frames, settings.n_mels)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(n, samples\)"):
        logmels_of_waveforms(waves[0], settings)
