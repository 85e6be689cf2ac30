"""A small REAL corpus in the challenge layout, built from public recordings.

The challenge corpus is not public, so workshops and tests use this one. Its recordings are
listed in :data:`SOURCES` with their exact commit, path and SHA-256; they are downloaded at run
time (or read from a mirror folder named by ``PRIMATE_DEMO_MIRROR``) and never redistributed.

Classes (label strings as written to ``lab/*.csv``):
``background`` (forest soundscapes, Sulawesi and Borneo at night, and Cameroon jungle background),
``chimpanzee`` (Cameroon, the group behind the challenge corpus), ``gibbon_female`` (northern grey
gibbon great calls), ``gibbon_male`` (gibbon male solos), ``great_argus`` (great argus pheasant).

The cutting rule (deterministic; :data:`DEMO_VERSION` changes whenever it does):

1. Each recording is read with soundfile, averaged to mono and resampled to 16 kHz (soxr HQ).
2. Windows of ``CLIP_SAMPLES_16K`` samples (2.99 s) start every ``hop_seconds`` (1.5 s for focal
   recordings, 2.99 s, i.e. no overlap, for background); the last window must fit entirely. A
   recording shorter than one window gives one clip of its own length.
3. Focal recordings (gibbons, argus): call windows are chosen by energy in the class's call band
   (:data:`CALL_BANDS`): the ``max_per_recording`` windows with the highest band energy, kept in
   time order. Chimpanzee clips are already cut around calls by their authors, so every window
   is kept. Background: every window.
4. Splits are by source recording (:data:`SOURCES` ``split``), so no recording spans two splits.
5. Clips are written as 16-bit PCM WAV at 16 kHz, numbered per split in the order (class, source,
   offset). Test labels are real (not ``?``): this corpus is ours to score.

A ``manifest.csv`` records, for every clip, its source file, URL, checksum, offset, license and
attribution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.data.audio import CLIP_SAMPLES_16K, SAMPLE_RATE, read_audio, resample, to_mono
from helpers.core.progress import progress_bar
from helpers.data.corpus_writer import CorpusWriter
from helpers.data.download import fetch_file, mirror_dir

DEMO_VERSION = 1
DEMO_CLASSES = ["background", "chimpanzee", "gibbon_female", "gibbon_male", "great_argus"]

_DENA = (
    "DenaJGibbon",
    "Fundamentals-biocoustics-using-R-and-smartphones-tutorial",
    "4ce67aea981e1166eede2f3e561f6fbb3f51fadc",
)
_UU = ("UtrechtUniversity", "animal-sounds", "374a8e442be3bd816c8833affde1feecf14645f4")
_LICENSES = {
    _DENA: ("CC0-1.0", "Dena J. Clink, Fundamentals of bioacoustics using R and smartphones tutorial"),
    _UU: (
        "Apache-2.0 (repository); no separate license stated for the audio: use, do not redistribute",
        "Utrecht University animal-sounds project (Zwerts, Treep, Kaandorp et al.), Cameroon",
    ),
}

#: Frequency band (Hz) whose energy ranks candidate call windows, per focal class. Measured on the
#: recordings: the gibbon calls stand 10-24 dB over the floor at 600-2500 Hz; argus calls are
#: weaker and broader.
CALL_BANDS = {"gibbon_female": (600.0, 2500.0), "gibbon_male": (600.0, 2500.0), "great_argus": (600.0, 4000.0)}


@dataclass(frozen=True)
class Source:
    repo: tuple[str, str, str]  # owner, name, commit
    path: str
    sha256: str
    label: str
    split: str
    recording: str  # identifier of the source recording (for the split rule)
    kind: str  # "focal", "clip" (already cut around a call) or "background"

    @property
    def relpath(self) -> str:
        return "/".join([*self.repo, self.path])

    @property
    def url(self) -> str:
        return "https://raw.githubusercontent.com/" + self.relpath


def _dena(path, sha, label, split, kind):
    return Source(_DENA, path, sha, label, split, Path(path).stem, kind)


def _uu(path, sha, label, split, recording):
    return Source(_UU, path, sha, label, split, recording, "clip" if label == "chimpanzee" else "background")


_F, _S = "FocalRecordings/", "SoundscapeRecordings/"
_V = "test_data/processed_wav_files/vocalizations/"
_B = "test_data/synthetic_intermediate/background/"

#: Every recording of the demo corpus, with the split of its source recording. The checksums are
#: those of ``shared/mirror/SHA256SUMS``.
SOURCES: list[Source] = [
    _dena(
        _F + "FemaleGibbon_1.wav",
        "fda4b89ea68caa1cd936f61f62d6676d6db1af6dd88cbde58194645b8da13b63",
        "gibbon_female",
        "train",
        "focal",
    ),
    _dena(
        _F + "FemaleGibbon_2.wav",
        "32b45c46e0402ca8e8033253216601917c6ef8a39e21d089a68bd28692112ad1",
        "gibbon_female",
        "train",
        "focal",
    ),
    _dena(
        _F + "FemaleGibbon_3.wav",
        "5151080c7387885f1fff1ad950b6a997acfdd1fea361e5fdfb362f9aee4a299c",
        "gibbon_female",
        "devel",
        "focal",
    ),
    _dena(
        _F + "FemaleGibbon_4.wav",
        "4bbbf26d3c92a0ae3671115c79a9ff32ea9096865dd90a33c87bddda516282d8",
        "gibbon_female",
        "test",
        "focal",
    ),
    _dena(
        _F + "GreatArgus_1.wav",
        "a96b1695343c1dedc574d276ef3109549cdb1d3eb3778915e02dcd86d900648b",
        "great_argus",
        "train",
        "focal",
    ),
    _dena(
        _F + "GreatArgus_2.wav",
        "0d127a3da406db494ff6375cb61d15b2cf4b85a127c1886cdc0fc6f6d841eae2",
        "great_argus",
        "train",
        "focal",
    ),
    _dena(
        _F + "GreatArgus_3.wav",
        "ae49fbe4803981006a4ebbc092ceac3e1bc9d7bc1022c44f5b51c87eb25d93e8",
        "great_argus",
        "devel",
        "focal",
    ),
    _dena(
        _F + "GreatArgus_4.wav",
        "3e157e6c765b9883a02b259bc1d3e68c321e23728cb0597a72a6f5b769118648",
        "great_argus",
        "test",
        "focal",
    ),
    _dena(
        _F + "MaleSolo_1.wav",
        "98345b5936e27c1e5319c9cb58cd92a8c81b0ba5c0b6850d8ac5c9b1a6c0d70e",
        "gibbon_male",
        "train",
        "focal",
    ),
    _dena(
        _F + "MaleSolo_2.wav",
        "95912be361446a3dc9d21deecfa91bb9ad6acc1449c43cf2a49b6b19552f3eee",
        "gibbon_male",
        "train",
        "focal",
    ),
    _dena(
        _F + "MaleSolo_3.wav",
        "f4da825cbb724b630a71b5b1bae6f02655326e1680600291573484ba48ead4b8",
        "gibbon_male",
        "devel",
        "focal",
    ),
    _dena(
        _F + "MaleSolo_4.wav",
        "2dda78e8182c492077e7496dde06c627c1e9752d72f92c2f5ac45ae34465cd3e",
        "gibbon_male",
        "test",
        "focal",
    ),
    # Borneo morning soundscapes are left out: they may hold distant gibbon or argus choruses.
    _dena(
        _S + "Borneo_Night_01.wav",
        "cd981a38c61bf1f0c384999a53c00736688a39891225a596488101df2e928481",
        "background",
        "train",
        "background",
    ),
    _dena(
        _S + "Borneo_Night_02.wav",
        "9c3d7db081eafffcd955395fd2ead2629215196b8b94c623ca5245b15e74e06c",
        "background",
        "train",
        "background",
    ),
    _dena(
        _S + "Borneo_Night_03.wav",
        "896b199701e8bbb003ad142f1eda1d3bc2a9b1decadca07d44486130acb47a76",
        "background",
        "devel",
        "background",
    ),
    _dena(
        _S + "Borneo_Night_04.wav",
        "f36bce00dfa7af9e993f00bfa85009d3fe1f25a00811a4fb399f3314a8322ce4",
        "background",
        "test",
        "background",
    ),
    _dena(
        _S + "Sulawesi_Morning_01.wav",
        "c1400cf932e84587f7cdb458951baf81cd1bbf535127651fec0349480ed7ea6a",
        "background",
        "train",
        "background",
    ),
    _dena(
        _S + "Sulawesi_Morning_02.wav",
        "55811130db64dad048ecc65c951ff63e7c44f25cc1a18630220f184975dcd24f",
        "background",
        "train",
        "background",
    ),
    _dena(
        _S + "Sulawesi_Morning_03.wav",
        "0fff7890844ba695e26e3c17e9297f97cd30fd7b196f6367ead3dfabd8d1c9bc",
        "background",
        "devel",
        "background",
    ),
    _dena(
        _S + "Sulawesi_Morning_04.wav",
        "0c5711b463609ca940f83c8d1418768d6fa7b4d68f460f020e29fe26483e8fd1",
        "background",
        "test",
        "background",
    ),
    _dena(
        _S + "Sulawesi_Night_01.wav",
        "b7a54a4978289307df6c41f3cdf892be70cf95bcb82e2254f14811b44ad3aa94",
        "background",
        "train",
        "background",
    ),
    _dena(
        _S + "Sulawesi_Night_02.wav",
        "41a6f839150f3d62a08d19ac5a369800a92e7f518c7046a4cfdc7699e6994147",
        "background",
        "train",
        "background",
    ),
    _dena(
        _S + "Sulawesi_Night_03.wav",
        "d32a64d8b4d6e1744854b54ba50e3e302de0bf701fea3cae7965e4cfd79dc366",
        "background",
        "devel",
        "background",
    ),
    _dena(
        _S + "Sulawesi_Night_04.wav",
        "7f37629a8946c293e641618688fe91c2c44171eb4ed502d8ece73e1a3dc94aba",
        "background",
        "test",
        "background",
    ),
    _uu(
        _V + "0_2C_20191220_170820_47.98.wav",
        "c17904facd1eb812929f222074063a76c3c88609c096c94e2ef0c4aa60891551",
        "chimpanzee",
        "train",
        "2C_20191220_170820",
    ),
    _uu(
        _V + "1_2C_20191220_171024_6.39.wav",
        "39ea56498f53f4f70d417daf9ae071b253bf872d54cfa058b10404ef3fb50354",
        "chimpanzee",
        "train",
        "2C_20191220_171024",
    ),
    _uu(
        _V + "2_2C_20191220_171024_57.714612.wav",
        "50b0ef712b5a82524e19a6b9caddb6c2604607f07cb33d5f18d0d33886d7c351",
        "chimpanzee",
        "train",
        "2C_20191220_171024",
    ),
    _uu(
        _V + "3_2C_20191220_171126_11.422.wav",
        "78d6afee66235b34636992449cc50cb5808b3872c92ca817ff1f362187c00123",
        "chimpanzee",
        "train",
        "2C_20191220_171126",
    ),
    _uu(
        _V + "4_2C_20191220_174124_36.6197.wav",
        "4c6d054fda2f714e4186d1570e07a9a2948072a5e3c31f871df7e8e38264586c",
        "chimpanzee",
        "train",
        "2C_20191220_174124",
    ),
    _uu(
        _V + "5_2C_20191220_174328_18.3801.wav",
        "13b1bcba869fd43085ee481a52c459b7c77f8a699994d0bfa59bd92fbf079535",
        "chimpanzee",
        "devel",
        "2C_20191220_174328",
    ),
    _uu(
        _V + "6_2C_20191220_181122_21.1956.wav",
        "6fc8d1a3d890609f393ff1ea3ac99df6d78f23d625fe7eac6281ef539f85d72e",
        "chimpanzee",
        "devel",
        "2C_20191220_181122",
    ),
    _uu(
        _V + "7_2C_20191220_185140_23.5305.wav",
        "ba28e50806e531e60191d03e1027ecf413eb08d3a388c34cc356dad61d7ec372",
        "chimpanzee",
        "test",
        "2C_20191220_185140",
    ),
    _uu(
        _B + "0_20200205_184848_22.080114.wav",
        "bb611fd16932496f8ddee8ba84ba993355c1552a741937c2ecba01ae293f82e9",
        "background",
        "train",
        "20200205_184848",
    ),
    _uu(
        _B + "1_20200205_184848_47.769784.wav",
        "adb1e0bc5b8ec3d9ac8f72371ba6de32b64d82e919931f2e156edcdecf3eb33d",
        "background",
        "train",
        "20200205_184848",
    ),
    _uu(
        _B + "2_20200205_185408_19.321908.wav",
        "8d5f3cf199dcc4d089a055487dd415254c60ea7826d054239427aa896cfde593",
        "background",
        "devel",
        "20200205_185408",
    ),
    _uu(
        _B + "3_20200205_185408_35.755305.wav",
        "699d1160a75a18f3a11d640ffce192f85dfcfafa9bd30ce36ce2f959c63d47d1",
        "background",
        "devel",
        "20200205_185408",
    ),
    _uu(
        _B + "4_20200205_194104_3.705106.wav",
        "9dfa5fa42d2f42388df7fa5380bc65c9a428bbd7a5f03fb6bf71c1ff16ab1e64",
        "background",
        "test",
        "20200205_194104",
    ),
    _uu(
        _B + "5_20200205_194104_28.809838.wav",
        "6e315292370d99ecff1b0cfe2dd0f27a6868317f94a7f5fbf9f773adcace60a3",
        "background",
        "test",
        "20200205_194104",
    ),
]


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of the windows of length ``window`` every ``hop`` that fit in ``n_samples``."""
    if n_samples <= window:
        return [0]
    return list(range(0, n_samples - window + 1, hop))


def band_energy_db(wave: np.ndarray, sample_rate: int, band: tuple[float, float]) -> float:
    """Energy (dB, arbitrary reference) of ``wave (samples,)`` between ``band`` = (low, high) Hz."""
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave)))) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1.0 / sample_rate)
    sel = (freqs >= band[0]) & (freqs < band[1])
    return float(10 * np.log10(spectrum[sel].sum() + 1e-20))


def select_windows(wave: np.ndarray, source: Source, max_per_recording: int, focal_hop: float = 1.5) -> list[int]:
    """Start samples (16 kHz) of the clips cut from one recording, by the module's rule."""
    window = CLIP_SAMPLES_16K
    if source.kind == "background":
        return window_starts(len(wave), window, window)
    starts = window_starts(len(wave), window, int(round(focal_hop * SAMPLE_RATE)))
    if source.kind == "clip":
        return starts
    band = CALL_BANDS[source.label]
    energy = np.array([band_energy_db(wave[s : s + window], SAMPLE_RATE, band) for s in starts])
    # Highest band energy first; ties (never in practice) by time, for determinism.
    order = sorted(range(len(starts)), key=lambda i: (-energy[i], starts[i]))[:max_per_recording]
    return sorted(starts[i] for i in order)


def build_demo_corpus(
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    mirror: str | Path | None = None,
    max_per_recording: int = 12,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build the demo corpus in ``out_dir`` (challenge layout) and return its path.

    ``mirror`` (default: the ``PRIMATE_DEMO_MIRROR`` variable) is read first; missing files are
    downloaded into ``cache_dir`` (default ``data/downloads``) and verified. An existing corpus
    built by the same :data:`DEMO_VERSION` with the same settings is reused as it is. The corpus is
    assembled in a temporary folder and renamed at the end, so an interrupted build never leaves
    a half corpus behind.
    """
    out_dir = Path(out_dir)
    settings = {
        "demo_version": DEMO_VERSION,
        "max_per_recording": max_per_recording,
        "sources": [s.sha256 for s in SOURCES],
    }
    stamp = out_dir / "corpus.json"
    if out_dir.exists() and not overwrite:
        if stamp.is_file() and json.loads(stamp.read_text()).get("settings") == settings:
            return out_dir
        if any(out_dir.iterdir()):
            raise FileExistsError(
                f"{out_dir} exists and is not this demo corpus (version {DEMO_VERSION}); "
                "remove it or pass overwrite=True (--overwrite) to rebuild it."
            )
    cache_dir = Path(cache_dir) if cache_dir is not None else Path("data") / "downloads"
    mirror = Path(mirror) if mirror is not None else mirror_dir()

    clips = []
    iterator = progress_bar(None, "demo corpus", unit="recording", display=progress, iterable=SOURCES)
    waves = {}
    for src in iterator:
        local = fetch_file(src.relpath, src.url, src.sha256, cache_dir, mirror)
        samples, sr = read_audio(local)
        wave = resample(to_mono(samples), sr, SAMPLE_RATE)
        waves[src.relpath] = wave
        for start in select_windows(wave, src, max_per_recording):
            clips.append((src, start, min(CLIP_SAMPLES_16K, len(wave) - start)))

    class_rank = {c: i for i, c in enumerate(DEMO_CLASSES)}
    clips.sort(key=lambda c: (class_rank[c[0].label], c[0].path, c[1]))
    rows, counters = [], {"train": 0, "devel": 0, "test": 0}
    with CorpusWriter(out_dir, replace=True, splits=("train", "devel", "test")) as corpus:
        for src, start, length in clips:
            counters[src.split] += 1
            filename = f"{src.split}_{counters[src.split]:05d}.wav"
            corpus.add_wave(src.split, filename, src.label, waves[src.relpath][start : start + length], SAMPLE_RATE)
            license_, attribution = _LICENSES[src.repo]
            rows.append(
                {
                    "split": src.split,
                    "filename": filename,
                    "label": src.label,
                    "source_recording": src.recording,
                    "source_path": src.relpath,
                    "source_url": src.url,
                    "source_sha256": src.sha256,
                    "offset_s": round(start / SAMPLE_RATE, 4),
                    "duration_s": round(length / SAMPLE_RATE, 4),
                    "license": license_,
                    "attribution": attribution,
                }
            )
        corpus.write_table("manifest.csv", pd.DataFrame(rows))
        corpus.write_json(
            "corpus.json",
            {
                "name": "demo",
                "generator": "helpers.data.corpora.demo.build_demo_corpus",
                "settings": settings,
                "classes": DEMO_CLASSES,
                "n_clips": counters,
            },
        )
    return out_dir


def _demo_sources(split: str, kinds: tuple[str, ...]) -> list[Source]:
    if split not in ("train", "devel", "test"):
        raise ValueError(f"demo recordings: split must be train, devel or test, not {split!r}")
    return [s for s in SOURCES if s.split == split and s.kind in kinds]


def demo_recordings(
    split: str = "test",
    cache_dir: str | Path | None = None,
    mirror: str | Path | None = None,
    kinds: tuple[str, ...] = ("focal", "background"),
) -> list[Path]:
    """Local, checksum-verified paths of the demo's whole source recordings of one ``split`` (read
    from the mirror or the download cache, downloaded when absent, as :func:`build_demo_corpus`
    does). The test split's recordings gave no training or devel clip, so a model trained on the
    demo corpus can be run over them as over new field recordings. ``kinds``: ``focal`` (calls
    recorded at close range), ``background`` (soundscapes) and ``clip`` (already cut around a call)."""
    return list(demo_recording_contents(split, cache_dir, mirror, kinds))


def demo_recording_contents(
    split: str = "test",
    cache_dir: str | Path | None = None,
    mirror: str | Path | None = None,
    kinds: tuple[str, ...] = ("focal", "background"),
) -> dict[Path, str | None]:
    """:func:`demo_recordings` with what each one holds, known by how it was recorded: a focal
    recording holds calls of its one class, a soundscape (``background``) holds none (None)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else Path("data") / "downloads"
    mirror = Path(mirror) if mirror is not None else mirror_dir()
    return {
        fetch_file(s.relpath, s.url, s.sha256, cache_dir, mirror): (None if s.kind == "background" else s.label)
        for s in _demo_sources(split, kinds)
    }
