"""Long recordings read in blocks: the window rule, any rate and channel count, and the same
samples whatever the block size."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from helpers.data.audio import AudioError, load_clip
from helpers.recordings.stream import recording_info, window_batches


def _all(path, **kw):
    batches = list(window_batches(path, **kw))
    return (
        np.concatenate([b.waves for b in batches]),
        np.concatenate([b.begin for b in batches]),
        np.concatenate([b.end for b in batches]),
        [len(b.waves) for b in batches],
    )


def test_windows_cover_the_recording_and_the_tail_window_ends_with_it(tmp_path):
    x = np.random.default_rng(0).normal(0, 0.1, 16_000 * 10 + 500).astype("float32")
    sf.write(tmp_path / "r.wav", x, 16_000, subtype="FLOAT")
    for block in (1 << 10, 1 << 18):  # the tail window's samples survive however the file is read
        waves, begin, end, sizes = _all(
            tmp_path / "r.wav", sample_rate=16_000, window=32_000, hop=16_000, batch=4, block_frames=block
        )
        # full windows at 0..8 s (end 10 s); the 500 samples after 10 s get one window ending with the file,
        # not a zero-padded one (silence the model may have learned as a class)
        np.testing.assert_allclose(begin, [*np.arange(9.0), 128_500 / 16_000])
        np.testing.assert_allclose(end, [*np.arange(2.0, 11.0)][:9] + [160_500 / 16_000])
        assert sizes == [4, 4, 2]
        np.testing.assert_array_equal(waves[3], x[48_000:80_000])
        np.testing.assert_array_equal(waves[-1], x[-32_000:])


def test_a_recording_shorter_than_a_window_gives_one_padded_window(tmp_path):
    sf.write(tmp_path / "short.wav", np.full(1000, 0.5, np.float32), 8000, subtype="FLOAT")
    waves, begin, end, _ = _all(tmp_path / "short.wav", sample_rate=8000, window=4000, hop=2000)
    assert waves.shape == (1, 4000) and begin.tolist() == [0.0] and end.tolist() == [0.125]
    assert np.allclose(waves[0, :1000], 0.5) and not waves[0, 1000:].any()


def test_no_tail_window_when_the_last_window_ends_with_the_file(tmp_path):
    sf.write(tmp_path / "exact.wav", np.zeros(12_000, np.float32), 8000)
    _, begin, end, _ = _all(tmp_path / "exact.wav", sample_rate=8000, window=4000, hop=4000)
    assert begin.tolist() == [0.0, 0.5, 1.0] and end.tolist() == [0.5, 1.0, 1.5]


@pytest.mark.parametrize("rate,channels", [(44_100, 2), (48_000, 1), (8000, 3)])
def test_streamed_resampling_equals_the_whole_file_path(tmp_path, rate, channels):
    rng = np.random.default_rng(rate)
    x = rng.normal(0, 0.1, (rate * 7 + 77, channels)).astype("float32")
    sf.write(tmp_path / "r.wav", x, rate, subtype="FLOAT")
    whole = load_clip(tmp_path / "r.wav", 16_000, 0)
    for block in (1 << 12, 1 << 18):  # small blocks: many resampler chunks; the result must not change
        waves, begin, _, _ = _all(tmp_path / "r.wav", sample_rate=16_000, window=16_000, hop=8000, block_frames=block)
        for w, b in zip(waves[:-1], begin[:-1]):
            start = int(round(b * 16_000))
            np.testing.assert_allclose(w, whole[start : start + 16_000], atol=2e-6)


def test_one_channel_can_be_picked(tmp_path):
    left, right = np.full(8000, 0.25, np.float32), np.full(8000, -0.5, np.float32)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), 8000, subtype="FLOAT")
    mix = _all(tmp_path / "st.wav", sample_rate=8000, window=8000, hop=8000)[0]
    one = _all(tmp_path / "st.wav", sample_rate=8000, window=8000, hop=8000, channel=1)[0]
    assert np.allclose(mix, -0.125) and np.allclose(one, -0.5)
    with pytest.raises(AudioError, match="channel 2 does not exist"):
        _all(tmp_path / "st.wav", sample_rate=8000, window=8000, hop=8000, channel=2)


def test_unreadable_and_empty_files_are_named(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioError, match="bad.wav"):
        recording_info(tmp_path / "bad.wav")
    with pytest.raises(AudioError, match="bad.wav"):
        _all(tmp_path / "bad.wav", sample_rate=8000, window=8000, hop=8000)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(AudioError, match="no samples"):
        _all(tmp_path / "empty.wav", sample_rate=8000, window=8000, hop=8000)
