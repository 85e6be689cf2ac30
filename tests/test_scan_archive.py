"""What a long unattended scan of an archive must not get wrong: formats passed over, damaged and short
recordings, two writers of one folder, a full disk, unreadable files, replaced files, file lists, and a
rerun over finished recordings that opens no audio."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from helpers.core.run_folder import RunFolderBusy
from helpers.recordings import scan as scan_entry
from helpers.recordings import scan_core as scan_module
from helpers.evaluation.predict import predict_files
from helpers.recordings.scan import ScanWriteError, scan
from tests.conftest import REPO_ROOT

RNG = np.random.default_rng(3)


def noise(path, seconds, rate=8000, **kwargs):
    sf.write(str(path), RNG.normal(0, 0.1, int(seconds * rate)).astype("float32"), rate, **kwargs)
    return path


@pytest.fixture()
def archive(tmp_path):
    root = tmp_path / "archive"
    (root / "site").mkdir(parents=True)
    noise(root / "a.wav", 4.0)
    noise(root / "site" / "b.opus", 3.0, rate=48000, format="OGG", subtype="OPUS")
    (root / "site" / "notes.txt").write_text("field notes")
    return root


def test_opus_is_scanned_and_predicted_and_other_files_are_listed(scan_checkpoint, archive, tmp_path):
    result = scan(scan_checkpoint, archive, tmp_path / "out", progress=False, device="cpu")
    assert sorted(result.recordings["recording"]) == ["a.wav", "site/b.opus"]
    assert list(result.skipped["path"]) == [str(archive / "site" / "notes.txt")]
    assert "not an audio file" in result.skipped["reason"].iloc[0]
    assert "skipped:" in result.format() and (tmp_path / "out" / "skipped.csv").is_file()
    errors: list[dict] = []
    table = predict_files(scan_checkpoint, [archive], device="cpu", errors=errors)
    assert sorted(table["filename"]) == ["a.wav", "b.opus"]
    assert [e["path"] for e in errors] == [str(archive / "site" / "notes.txt")]


def test_a_truncated_wav_is_scanned_as_far_as_it_goes_and_said_damaged(scan_checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    whole = noise(tmp_path / "whole.wav", 6.0)
    data = whole.read_bytes()
    (folder / "cut.wav").write_bytes(data[: 44 + 2 * 8000 * 2])  # the header still says 6 s; 2 s are there
    result = scan(scan_checkpoint, folder, tmp_path / "out", progress=False, device="cpu")
    row = result.recordings.iloc[0]
    assert row["status"] == "scanned" and row["duration"] == pytest.approx(2.0, abs=0.01)
    assert "damaged" in row["note"] and "6.00 s" in row["note"]
    assert f"note: {folder / 'cut.wav'}: damaged" in result.format()
    again = scan(scan_checkpoint, folder, tmp_path / "out", progress=False, device="cpu")
    assert again.recordings["status"].iloc[0] == "resumed" and "damaged" in again.recordings["note"].iloc[0]


def test_a_recording_shorter_than_a_window_is_scored_but_never_detected(scan_checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    noise(folder / "short.wav", 0.3)
    noise(folder / "long.wav", 3.0)
    result = scan(scan_checkpoint, folder, tmp_path / "out", threshold=0.0, progress=False, device="cpu")
    rows = result.recordings.set_index("recording")
    assert "shorter than one window (0.30 s of 1.00 s)" in rows.loc["short.wav", "note"]
    assert rows.loc["short.wav", "windows"] == 1 and rows.loc["short.wav", "detections"] == 0
    assert rows.loc["long.wav", "detections"] > 0 and rows.loc["long.wav", "note"] == ""
    assert len(pd.read_csv(tmp_path / "out" / "short.wav.scores.csv")) == 1


def test_predict_says_when_a_file_is_longer_or_shorter_than_one_clip(scan_checkpoint, tmp_path):
    noise(tmp_path / "long.wav", 5.0)
    noise(tmp_path / "short.wav", 0.4)
    noise(tmp_path / "exact.wav", 1.0)
    table = predict_files(
        scan_checkpoint, [tmp_path / "long.wav", tmp_path / "short.wav", tmp_path / "exact.wav"], device="cpu"
    ).set_index("filename")
    assert "longer than one clip (5.00 s): only its first 1.00 s were scored" in table.loc["long.wav", "note"]
    assert "zero-padded" in table.loc["short.wav", "note"] and table.loc["exact.wav", "note"] == ""


def test_a_second_scan_into_a_folder_being_written_stops_at_once(scan_checkpoint, archive, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\n"
                "from helpers.core.run_folder import lock\n"
                f"with lock({str(out)!r}, wait=False, purpose='a scan'):\n"
                "    print('held', flush=True)\n"
                "    time.sleep(60)\n"
            ),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(RunFolderBusy, match=r"being written by pid \d+ .*\(a scan\).*another --out"):
            scan(scan_checkpoint, archive, out, progress=False, device="cpu")
        assert time.monotonic() - started < 10
        assert not list(out.glob("*.scan.json"))
    finally:
        holder.kill()
        holder.wait()
    assert len(scan(scan_checkpoint, archive, out, progress=False, device="cpu").recordings) == 2


def test_a_full_disk_stops_the_scan_in_one_line_and_keeps_what_is_finished(
    scan_checkpoint, archive, tmp_path, monkeypatch
):
    written = scan_module.FileStore.write
    calls = []

    def fill_up(store, name, *args, **kwargs):
        calls.append(name)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return written(store, name, *args, **kwargs)

    monkeypatch.setattr(scan_module.FileStore, "write", fill_up)
    with pytest.raises(ScanWriteError) as caught:
        scan(scan_checkpoint, archive, tmp_path / "out", progress=False, device="cpu")
    message = str(caught.value)
    assert "\n" not in message and "no space left on the disk" in message and "free some space" in message
    assert "1 recording(s) finished so far are kept" in message
    assert (tmp_path / "out" / "a.wav.scan.json").is_file()
    monkeypatch.setattr(scan_module.FileStore, "write", written)
    resumed = scan(scan_checkpoint, archive, tmp_path / "out", progress=False, device="cpu")
    assert dict(zip(resumed.recordings["recording"], resumed.recordings["status"])) == {
        "a.wav": "resumed",
        "site/b.opus": "scanned",
    }


def test_an_unreadable_file_is_one_line_with_the_right_fix(scan_checkpoint, archive, tmp_path, monkeypatch):
    from helpers.data import audio

    opened = audio._open_binary

    def refuse(path):
        if str(path).endswith("a.wav"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return opened(path)

    monkeypatch.setattr(audio, "_open_binary", refuse)
    result = scan(scan_checkpoint, archive, tmp_path / "out", progress=False, device="cpu")
    assert list(result.recordings["recording"]) == ["site/b.opus"]
    error = result.errors["error"].iloc[0]
    assert "permission denied; make the file readable" in error and "replace" not in error


def test_a_scan_folder_without_write_permission_is_one_line(scan_checkpoint, archive, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(scan_entry.run_folder, "lock", refuse)
    with pytest.raises(ScanWriteError, match="permission denied while writing the scan folder; scan into an --out"):
        scan(scan_checkpoint, archive, tmp_path / "out", progress=False, device="cpu")


def test_a_file_replaced_with_the_same_size_and_time_needs_the_content_fingerprint(scan_checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    path = noise(folder / "rec.wav", 3.0)
    stat = path.stat()
    for fingerprint in ("stat", "content"):
        out = tmp_path / f"out-{fingerprint}"
        scan(scan_checkpoint, folder, out, progress=False, device="cpu", fingerprint=fingerprint)
        noise(path, 3.0)  # other samples, same size
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as cp -p or rsync -a leave it
        again = scan(scan_checkpoint, folder, out, progress=False, device="cpu", fingerprint=fingerprint)
        expected = "resumed" if fingerprint == "stat" else "scanned"
        assert again.recordings["status"].iloc[0] == expected, fingerprint
        assert again.settings["fingerprint"] == fingerprint


def test_a_file_list_scans_what_it_names_and_lists_what_is_missing(scan_checkpoint, archive, tmp_path):
    listing = archive / "recordings.txt"
    listing.write_text("# the archive\na.wav\n\nsite/b.opus\nsite/gone.wav\n")
    result = scan(scan_checkpoint, None, tmp_path / "out", file_list=listing, progress=False, device="cpu")
    assert sorted(result.recordings["recording"]) == ["a.wav", "site/b.opus"]
    assert (
        len(result.skipped) == 1
        and "recordings.txt line 5: site/gone.wav not found" in result.skipped["reason"].iloc[0]
    )
    csv = tmp_path / "list.csv"
    pd.DataFrame({"path": ["a.wav"], "site": ["north"]}).to_csv(csv, index=False)
    listed = scan(scan_checkpoint, None, tmp_path / "out2", file_list=csv, root=archive, progress=False, device="cpu")
    assert list(listed.recordings["recording"]) == ["a.wav"]
    pd.DataFrame({"file": ["a.wav"]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="needs a 'path' column"):
        scan(scan_checkpoint, None, tmp_path / "out3", file_list=csv, root=archive, progress=False, device="cpu")


def test_a_rerun_over_finished_recordings_opens_no_audio(scan_checkpoint, archive, tmp_path, monkeypatch):
    out = tmp_path / "out"
    scan(scan_checkpoint, archive, out, progress=False, device="cpu")

    def no_audio(*args, **kwargs):
        raise AssertionError("a finished recording's audio was opened")

    monkeypatch.setattr(scan_module, "recording_info", no_audio)
    monkeypatch.setattr(scan_module, "window_batches", no_audio)
    again = scan(scan_checkpoint, archive, out, progress=False, device="cpu")
    assert set(again.recordings["status"]) == {"resumed"} and again.errors.empty
    redetected = scan(scan_checkpoint, archive, out, threshold=0.2, progress=False, device="cpu")
    assert set(redetected.recordings["status"]) == {"redetected"}


def test_the_command_line_takes_a_file_list_and_prints_one_line_per_problem(scan_checkpoint, archive, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("a.wav\nmissing.wav\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "scan",
            str(scan_checkpoint),
            "--file-list",
            str(listing),
            "--root",
            str(archive),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            "--device",
            "cpu",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "skipped: " in done.stdout and "list.txt line 2: missing.wav not found" in done.stdout
    nothing = subprocess.run(
        [sys.executable, "-m", "helpers", "scan", str(scan_checkpoint), "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert nothing.returncode == 1 and "give audio files or folders, or --file-list FILE" in nothing.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_decoding_ahead_gives_the_same_outputs_and_survives_a_bad_file(scan_checkpoint, archive, tmp_path, workers):
    (archive / "site" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    noise(archive / "z.flac", 5.0)
    inline = scan(
        scan_checkpoint, archive, tmp_path / "inline", progress=False, device="cpu", decode_workers=0, batch_size=2
    )
    ahead = scan(
        scan_checkpoint,
        archive,
        tmp_path / "ahead",
        progress=False,
        device="cpu",
        decode_workers=workers,
        blocks_in_flight=1,
        batch_size=2,
    )
    assert (
        list(ahead.recordings["recording"])
        == list(inline.recordings["recording"])
        == ["a.wav", "site/b.opus", "z.flac"]
    )
    assert [p.endswith("broken.wav") for p in ahead.errors["path"]] == [True]
    for name in inline.recordings["recording"]:
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "inline" / f"{name}.scores.csv"),
            pd.read_csv(tmp_path / "ahead" / f"{name}.scores.csv"),
        )
    assert ahead.settings["decode_workers"] == workers and ahead.score_seconds > 0


def test_a_scan_stopped_inside_a_long_recording_resumes_at_its_last_kept_batch(scan_checkpoint, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    noise(folder / "long.wav", 20.0)
    clean = scan(
        scan_checkpoint, folder, tmp_path / "clean", progress=False, device="cpu", batch_size=4, decode_workers=0
    )
    monkeypatch.setattr(scan_module, "PARTIAL_EVERY_S", 0.0)  # keep the windows after every batch
    original = scan_module._Scanner.score_windows
    calls = []

    def stop_at_the_fourth(self, feats):
        calls.append(len(feats))
        if len(calls) == 4:
            raise KeyboardInterrupt  # preempted inside the recording
        return original(self, feats)

    monkeypatch.setattr(scan_module._Scanner, "score_windows", stop_at_the_fourth)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        scan(scan_checkpoint, folder, out, progress=False, device="cpu", batch_size=4, decode_workers=1)
    assert (out / "long.wav.partial.npz").is_file() and not (out / "long.wav.scan.json").exists()
    calls.clear()
    monkeypatch.setattr(
        scan_module._Scanner, "score_windows", lambda self, feats: calls.append(len(feats)) or original(self, feats)
    )
    resumed = scan(scan_checkpoint, folder, out, progress=False, device="cpu", batch_size=4, decode_workers=0)
    total_batches = -(-clean.recordings["windows"].iloc[0] // 4)
    assert len(calls) == total_batches - 3  # the three batches kept before the stop are not scored again
    assert resumed.recordings["status"].iloc[0] == "scanned" and not (out / "long.wav.partial.npz").exists()
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "clean" / "long.wav.scores.csv"), pd.read_csv(out / "long.wav.scores.csv")
    )


def test_the_packed_layout_keeps_an_archive_in_a_few_files_with_the_same_detections(
    scan_checkpoint, archive, tmp_path, monkeypatch
):
    from helpers.recordings import scan_store
    from helpers.recordings.scan_store import read_windows, scan_recordings

    for i in range(5):
        noise(archive / f"more{i}.wav", 2.0)
    files = scan(scan_checkpoint, archive, tmp_path / "files", threshold=0.3, progress=False, device="cpu")
    monkeypatch.setattr(scan_store, "PACK_RECORDINGS", 3)
    out = tmp_path / "packed"
    packed = scan(scan_checkpoint, archive, out, threshold=0.3, progress=False, device="cpu", layout="packed")
    assert packed.settings["layout"] == "packed" and len(packed.recordings) == 7
    assert (out / "detections.csv").read_text() == (tmp_path / "files" / "detections.csv").read_text()
    # 7 recordings in packs of 3: three packs of three files each, beside the folder's own tables
    assert len(list((out / "packs").glob("*.npz"))) == 3 and len(list((out / "packs").iterdir())) == 9
    assert not list(out.rglob("*.scores.csv")) and not list(out.rglob("*.scan.json"))[1:]  # scan.json only
    assert scan_recordings(out) == scan_recordings(tmp_path / "files") == sorted(files.recordings["recording"])
    for name in ("a.wav", "site/b.opus"):
        np.testing.assert_allclose(
            read_windows(out, name).filter(like="score_"),
            read_windows(tmp_path / "files", name).filter(like="score_"),
            atol=1e-6,
        )
    again = scan(scan_checkpoint, archive, out, threshold=0.3, progress=False, device="cpu")
    assert set(again.recordings["status"]) == {"resumed"}
    redetected = scan(scan_checkpoint, archive, out, threshold=0.2, progress=False, device="cpu")
    assert set(redetected.recordings["status"]) == {"redetected"} and len(list((out / "packs").glob("*.npz"))) == 3
    relisted = scan(scan_checkpoint, archive, tmp_path / "files", threshold=0.2, progress=False, device="cpu")
    assert (out / "detections.csv").read_text() == (tmp_path / "files" / "detections.csv").read_text()
    assert len(relisted.detections) == len(redetected.detections)
    with pytest.raises(ValueError, match="holds a scan in the packed layout"):
        scan(scan_checkpoint, archive, out, progress=False, device="cpu", layout="files")


def test_a_packed_scan_stopped_mid_pack_keeps_the_packs_written(scan_checkpoint, archive, tmp_path, monkeypatch):
    from helpers.recordings import scan_store

    for i in range(4):
        noise(archive / f"more{i}.wav", 2.0)
    monkeypatch.setattr(scan_store, "PACK_RECORDINGS", 2)
    original = scan_module._Scanner.score_recording
    calls = []

    def stop_at_the_fourth(self, path, name, *args):
        calls.append(name)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, path, name, *args)

    monkeypatch.setattr(scan_module._Scanner, "score_recording", stop_at_the_fourth)
    out = tmp_path / "packed"
    with pytest.raises(KeyboardInterrupt):
        scan(scan_checkpoint, archive, out, progress=False, device="cpu", layout="packed", decode_workers=0)
    assert len(list((out / "packs").glob("*.json"))) == 2  # the first pack: its records and its detections
    calls.clear()
    monkeypatch.setattr(scan_module._Scanner, "score_recording", original)
    resumed = scan(scan_checkpoint, archive, out, progress=False, device="cpu", decode_workers=0)
    status = resumed.recordings["status"].value_counts().to_dict()
    assert status == {"resumed": 2, "scanned": 4}
