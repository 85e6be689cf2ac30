"""docs/reference.md, the project's own reference: citations of it resolve, no file points to
documents outside the repository, and its model table agrees with the code."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from helpers.models.cost import count_parameters
from helpers.models.registry import MODELS, create_model
from tests.conftest import REPO_ROOT

REFERENCE = REPO_ROOT / "docs" / "reference.md"
#: The sections of FACTS.md that became §1-§7; their numbers must never disappear.
FIRST_SECTIONS = range(1, 8)

#: A section heading: "## 3. Models: ...".
HEADING = re.compile(r"^## (\d+)\. (\S.*)$", re.MULTILINE)
#: "docs/reference.md §4", also "§4, §7", "§2-3" or "§2 and §3" (every number is checked).
SECTION_CITATION = re.compile(r"docs/reference\.md\s*(§\s*\d+(?:\s*(?:,|-|–|and|or)\s*§?\s*\d+)*)")
#: 'docs/reference.md, "Front end"': a citation by (part of) a section title.
TITLE_CITATION = re.compile(r"docs/reference\.md,\s*\"([^\"]+)\"")
#: References to documents that live outside the repository (a fresh clone cannot follow them).
OUTSIDE_REFERENCE = re.compile(r"\bFACTS\b|shared/reference|shared/paper")
#: Files whose citations must resolve, as glob patterns relative to the repository root.
CITING_GLOBS = ("helpers/**/*.py", "tests/*.py", "notebooks/*.ipynb", "benchmarks/*.py", "README.md")


def reference_text() -> str:
    assert REFERENCE.is_file(), f"{REFERENCE} is missing; the code cites it."
    return REFERENCE.read_text(encoding="utf-8")


def sections() -> dict[int, str]:
    """Section number -> title of docs/reference.md."""
    found: dict[int, str] = {}
    for match in HEADING.finditer(reference_text()):
        number = int(match.group(1))
        assert number not in found, f"docs/reference.md has two sections numbered {number}."
        found[number] = match.group(2).strip()
    return found


def section_body(number: int) -> str:
    """The text of section ``number``, from its heading to the next section heading."""
    text = reference_text()
    starts = [(int(m.group(1)), m.start()) for m in HEADING.finditer(text)]
    for i, (n, start) in enumerate(starts):
        if n == number:
            end = starts[i + 1][1] if i + 1 < len(starts) else len(text)
            return text[start:end]
    raise AssertionError(f"docs/reference.md has no section {number}.")


def file_lines(path: Path) -> list[str]:
    """A file's text as lines; for a notebook, the lines of its cells' sources (JSON escapes such
    as \\u00a7 for § are decoded that way)."""
    if path.suffix == ".ipynb":
        notebook = json.loads(path.read_text(encoding="utf-8"))
        lines: list[str] = []
        for cell in notebook.get("cells", []):
            source = cell.get("source", "")
            lines += ("".join(source) if isinstance(source, list) else source).splitlines()
        return lines
    return path.read_text(encoding="utf-8").splitlines()


def citing_files() -> list[Path]:
    """The files of :data:`CITING_GLOBS`, except this one (its patterns and messages are not citations)."""
    this_file = Path(__file__).resolve()
    paths: set[Path] = set()
    for pattern in CITING_GLOBS:
        paths.update(p for p in REPO_ROOT.glob(pattern) if p.is_file() and p.resolve() != this_file)
    return sorted(paths)


def citations(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """``(where, cited text)`` for every match of ``pattern`` in the citing files."""
    found = []
    for path in citing_files():
        for number, line in enumerate(file_lines(path), start=1):
            for match in pattern.finditer(line):
                found.append((f"{path.relative_to(REPO_ROOT)} line {number}", match.group(1)))
    return found


# --- (1) the sections and the citations of them -------------------------------------------------


def test_sections_are_numbered_one_to_n_and_keep_the_original_numbering():
    numbers = list(sections())
    assert numbers == list(range(1, len(numbers) + 1)), (
        f"docs/reference.md sections are numbered {numbers}; number them 1, 2, 3, ... in order."
    )
    missing = [n for n in FIRST_SECTIONS if n not in numbers]
    assert not missing, f"docs/reference.md lacks sections {missing}; citations by number rely on them."


def test_every_section_citation_names_an_existing_section():
    known = sections()
    bad = []
    for where, cited in citations(SECTION_CITATION):
        for number in map(int, re.findall(r"\d+", cited)):
            if number not in known:
                bad.append(f"{where}: docs/reference.md §{number}")
    assert not bad, (
        f"citations of sections that docs/reference.md does not have (it has {sorted(known)}):\n" + "\n".join(bad)
    )


def test_every_title_citation_names_an_existing_section():
    titles = [title.lower() for title in sections().values()]
    bad = [
        f'{where}: docs/reference.md, "{cited}"'
        for where, cited in citations(TITLE_CITATION)
        if not any(cited.lower() in title for title in titles)
    ]
    assert not bad, "citations of section titles that docs/reference.md does not have:\n" + "\n".join(bad)


def test_citation_patterns_match_the_forms_in_use():
    assert SECTION_CITATION.search("see docs/reference.md §4.").group(1) == "§4"
    assert re.findall(r"\d+", SECTION_CITATION.search("docs/reference.md §2 and §3").group(1)) == ["2", "3"]
    assert TITLE_CITATION.search('(docs/reference.md, "Front end")').group(1) == "Front end"
    assert OUTSIDE_REFERENCE.search("(FACTS section 7)") and OUTSIDE_REFERENCE.search("FACTS 2")
    assert OUTSIDE_REFERENCE.search("../shared/reference/FACTS.md")
    assert not OUTSIDE_REFERENCE.search("RUN_ARTEFACTS = (...)")
    assert not OUTSIDE_REFERENCE.search("PRIMATE_DEMO_MIRROR ?= ../shared/mirror")


# --- (2) nothing points outside the repository ----------------------------------------------


def repository_files() -> list[Path]:
    """Files git tracks or would track (untracked but not ignored), outside docs/."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (or no git): cannot list the repository's files")
    names = sorted({name for name in listing.decode().split("\0") if name})
    return [REPO_ROOT / name for name in names if not name.startswith("docs/") and (REPO_ROOT / name).is_file()]


def test_no_file_outside_docs_cites_documents_outside_the_repository():
    this_file = Path(__file__).resolve()
    bad = []
    for path in repository_files():
        if path.resolve() == this_file:
            continue  # its patterns name what they look for
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE_REFERENCE.search(line):
                bad.append(f"{path.relative_to(REPO_ROOT)} line {number}: {line.strip()[:120]}")
    assert not bad, (
        "these lines cite FACTS.md or other files outside the repository; cite "
        "docs/reference.md §N instead:\n" + "\n".join(bad)
    )


# --- (3) the model table of §3 agrees with the code -----------------------------------------------


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


@functools.lru_cache(maxsize=None)
def model_table() -> dict[str, dict[str, str]]:
    """Rows of the §3 table whose first cell is a registry name in backticks, by that name; each
    row maps a column header to its cell."""
    lines = section_body(3).splitlines()
    header_at = next((i for i, line in enumerate(lines) if line.startswith("|") and "registry name" in line), None)
    assert header_at is not None, "docs/reference.md §3 has no table with a 'registry name' column."
    header = _cells(lines[header_at])
    rows: dict[str, dict[str, str]] = {}
    for line in lines[header_at + 2 :]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        name = cells[0].strip("`")
        assert name not in rows, f"docs/reference.md §3 lists {name!r} twice."
        rows[name] = dict(zip(header, cells))
    return rows


@functools.lru_cache(maxsize=None)
def built_model(name: str) -> torch.nn.Module:
    return create_model(name, n_classes=5).eval()


def _integer(cell: str) -> int:
    return int(cell.replace(",", "").replace("_", "").strip())


def _shape(cell: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.split(r"\s*x\s*", cell.strip()))


def test_model_table_lists_every_registered_model_once():
    assert sorted(model_table()) == sorted(MODELS), (
        f"docs/reference.md §3 lists {sorted(model_table())}, the registry has {sorted(MODELS)}."
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_table_parameter_count_matches_the_code(name):
    written = _integer(model_table()[name]["trainable parameters"])
    assert written == count_parameters(built_model(name)), (
        f"docs/reference.md §3 says {name} has {written:,} trainable parameters (5 classes), the code "
        f"builds {count_parameters(built_model(name)):,}; correct whichever is wrong."
    )


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.slow
def test_model_table_embedding_size_and_shapes_match_the_code(name):
    row, model = model_table()[name], built_model(name)
    assert _integer(row["embedding D"]) == model.embedding_dim
    for frames in (150, 75):
        with torch.no_grad():
            out = model.backbone(model.normalize(torch.zeros(1, frames, 64)))
        written = _shape(row[f"backbone output, {frames} x 64"])
        assert written == tuple(out.shape[1:]), (
            f"docs/reference.md §3: {name} backbone output for {frames} x 64 is written {written}, "
            f"the code gives {tuple(out.shape[1:])}."
        )


def test_narrowed_network_table_agrees_with_the_code():
    """§10's parameter counts at widths 1, ¼ and ⅛ are what create_model builds."""
    names = {
        "CNN6": "cnn6",
        "CNN10": "cnn10",
        "MobileNetV1": "mobilenetv1",
        "ResNet22": "resnet22",
        "WRN28-2": "wrn28_2",
    }
    rows = [line.split("|")[1:-1] for line in section_body(10).splitlines() if line.startswith("| ")]
    checked = 0
    for cells in rows:
        name = cells[0].strip()
        if name not in names:
            continue
        counts = [int(c.strip().replace(",", "")) for c in cells[1:4]]
        built = [count_parameters(create_model(names[name], 5, width=w)) for w in (1.0, 0.25, 0.125)]
        assert counts == built, f"docs/reference.md §10, {name}: {counts} in the table, {built} built"
        checked += 1
    assert checked == len(names)
