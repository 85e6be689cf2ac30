"""A small report builder: one self-contained HTML file and one Markdown file, same content.

Notebook ``08_report`` gathers the results of training runs (tables from :mod:`helpers.experiments.collect`,
figures from :mod:`helpers.reporting.plots`) into a document that can be mailed (HTML: figures embedded,
no other file needed) or committed and diffed (Markdown: figures as PNG files beside it)::

    from helpers.reporting.report import Report, environment_lines
    report = Report("Primate calls: reproduction of the paper")
    report.heading("Model comparison")
    report.text("Devel UAR in %, **best** checkpoint (selected on devel, so optimistic).")
    t2 = table2(runs, as_text=False)        # helpers.experiments.collect: numbers in %
    report.table(t2, caption="Paper Table 2 beside ours")
    report.figure(plot_model_comparison(t2, ours="devel UAR, best (selected on devel: optimistic)",
                                        paper="paper devel UAR"), caption="Devel UAR", name="table2")
    report.figure("figures/confusion.png", caption="Confusion matrix of the best run")
    report.heading("How these numbers were produced")
    report.text("\\n".join(f"- {line}" for line in environment_lines()))
    paths = report.write("runs/report")   # {"markdown": .../report.md, "html": .../report.html}

``write`` produces ``folder/stem.md``, the PNGs it links in ``folder/stem-assets/``, and
``folder/stem.html`` with the same PNGs as base64 data URIs. Every file is written atomically
(:func:`helpers.core.fileio.atomic_write`), so an interrupted write leaves the previous report intact.

Paragraph text, headings and captions are Markdown (CommonMark, rendered by mistune):
``**bold**``, ``*italic*``, `` `code` ``, ``[links](https://...)``, bullet lists and so on. The
Markdown file keeps the text as written. In the HTML file raw HTML in the text is escaped, so
``<script>`` in a paragraph shows as text and never runs; a link whose scheme is not in
:data:`SAFE_LINK_SCHEMES` (``javascript:`` ...) stays plain text; an image in the text becomes a
link to it, so the page never fetches anything. The page itself is a Jinja2 template
(``templates/report.html.j2``) with autoescaping on.
"""

from __future__ import annotations

import base64
import functools
import math
import numbers
import platform
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import matplotlib.figure
import mistune
import pandas as pd

from helpers.core.fileio import atomic_write
from helpers.reporting.plots import save_figure
from helpers.core.provenance import git_commit, library_versions, machine_record

#: Libraries whose versions :func:`environment_lines` reports (names as in
#: :data:`helpers.core.provenance.TRACKED_PACKAGES`).
ENVIRONMENT_PACKAGES = ("torch", "numpy", "pandas", "scikit-learn")
#: Resolution (dots per inch) of figures the report saves itself.
FIGURE_DPI = 120
#: URL schemes kept as links in the HTML; a link with any other scheme (``javascript:`` ...)
#: stays plain text. Links without a scheme (relative paths, ``#anchors``) are kept.
SAFE_LINK_SCHEMES = ("http", "https", "mailto")


@dataclass
class _Heading:
    text: str
    level: int


@dataclass
class _Text:
    markdown: str


@dataclass
class _Table:
    df: pd.DataFrame
    caption: str | None
    float_format: str


@dataclass
class _Figure:
    source: Path | matplotlib.figure.Figure
    caption: str
    name: str | None
    section: str  # the heading above the figure, for error messages


class Report:
    """An ordered list of headings, paragraphs, tables and figures, written by :meth:`write`.

    Nothing touches the disk before :meth:`write`: matplotlib Figures are kept and saved as PNG
    then, so a figure can still be changed after it was added.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._blocks: list[Any] = []

    # --- building ---------------------------------------------------------------------------

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading; ``level`` 2..6 (level 1 is the report's title)."""
        if not 1 <= level <= 6:
            raise ValueError(f"Report.heading({text!r}): level must be 1..6, not {level}.")
        self._blocks.append(_Heading(text, level))

    def text(self, markdown_paragraph: str) -> None:
        """One or more paragraphs of small Markdown (see the module docstring for what is supported)."""
        self._blocks.append(_Text(markdown_paragraph))

    def table(self, df: pd.DataFrame, caption: str | None = None, float_format: str = "{:.1f}") -> None:
        """A table of ``df``'s columns (the index is not shown).

        Floats are formatted with ``float_format`` (a ``str.format`` pattern, default one decimal,
        as the paper's %), integers as they are, NaN/None/NA as an empty cell. ``df`` is copied,
        so later changes to it do not change the report.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"Report.table: expected a pandas DataFrame, got {type(df).__name__}.")
        try:
            float_format.format(1.5)
        except (ValueError, IndexError, KeyError) as exc:
            raise ValueError(
                f"Report.table: float_format {float_format!r} is not a str.format pattern "
                f"for one number ({exc}); use e.g. '{{:.1f}}'."
            ) from exc
        self._blocks.append(_Table(df.copy(), caption, float_format))

    def figure(self, path_or_fig: str | Path | matplotlib.figure.Figure, caption: str, name: str | None = None) -> None:
        """A figure: a PNG file, or a matplotlib Figure (saved as PNG when the report is written).

        ``name`` is the PNG's file name (without ``.png``) in the assets folder; by default the
        PNG's own name, or ``figure-NN`` for a Figure. A PNG path is checked at :meth:`write`
        time, so it may be produced after it was added.
        """
        if isinstance(path_or_fig, matplotlib.figure.Figure):
            source: Path | matplotlib.figure.Figure = path_or_fig
        elif isinstance(path_or_fig, (str, Path)):
            source = Path(path_or_fig)
        else:
            raise TypeError(
                f"Report.figure({caption!r}): expected a PNG path or a matplotlib Figure, "
                f"got {type(path_or_fig).__name__}."
            )
        self._blocks.append(_Figure(source, caption, name, self._current_section()))

    def _current_section(self) -> str:
        for block in reversed(self._blocks):
            if isinstance(block, _Heading):
                return block.text
        return self.title

    # --- writing ----------------------------------------------------------------------------

    def write(self, folder: str | Path, stem: str = "report") -> dict[str, Path]:
        """Write ``folder/stem.md`` (+ PNGs in ``folder/stem-assets/``) and ``folder/stem.html``.

        Returns ``{"markdown": path, "html": path}``. Raises FileNotFoundError, before writing
        anything, when a figure's PNG path does not exist (naming the path and the section).
        """
        folder = Path(folder)
        figures = [b for b in self._blocks if isinstance(b, _Figure)]
        for fig in figures:
            if isinstance(fig.source, Path) and not fig.source.is_file():
                raise FileNotFoundError(
                    f"{fig.source}: figure {fig.caption!r} in report section {fig.section!r} does not "
                    f"exist; run the cell or notebook that writes it, or correct the path."
                )
        folder.mkdir(parents=True, exist_ok=True)
        assets_dir = folder / f"{stem}-assets"
        if figures:
            assets_dir.mkdir(exist_ok=True)
        assets = self._write_assets(figures, assets_dir)

        paths = {"markdown": folder / f"{stem}.md", "html": folder / f"{stem}.html"}
        markdown = self._markdown(assets, f"{stem}-assets")
        page = self._html(assets)
        with atomic_write(paths["markdown"], "w") as f:
            f.write(markdown)
        with atomic_write(paths["html"], "w") as f:
            f.write(page)
        return paths

    def _write_assets(self, figures: list[_Figure], assets_dir: Path) -> dict[int, Path]:
        """Copy or save every figure as ``assets_dir/<unique name>.png``; key: id of the block."""
        used: set[str] = set()
        out: dict[int, Path] = {}
        for k, fig in enumerate(figures, start=1):
            base = fig.name or (fig.source.stem if isinstance(fig.source, Path) else f"figure-{k:02d}")
            base = _slug(base) or f"figure-{k:02d}"
            name, n = base, 2
            while name in used:  # two runs' "confusion.png" must not overwrite each other
                name, n = f"{base}-{n}", n + 1
            used.add(name)
            if isinstance(fig.source, Path):
                target = assets_dir / f"{name}.png"
                data = fig.source.read_bytes()
                with atomic_write(target) as f:
                    f.write(data)
            else:
                target = save_figure(fig.source, name, figures_dir=assets_dir, dpi=FIGURE_DPI)
            out[id(fig)] = target
        return out

    def _markdown(self, assets: dict[int, Path], assets_rel: str) -> str:
        parts = [f"# {self.title}"]
        for block in self._blocks:
            if isinstance(block, _Heading):
                parts.append(f"{'#' * block.level} {block.text}")
            elif isinstance(block, _Text):
                parts.append(block.markdown.strip())
            elif isinstance(block, _Table):
                parts.append(markdown_table(block.df, block.caption, block.float_format))
            elif isinstance(block, _Figure):
                rel = f"{assets_rel}/{assets[id(block)].name}"
                alt = block.caption.replace("[", "(").replace("]", ")").replace("\n", " ")
                parts.append(f"![{alt}]({rel})\n\n*{block.caption}*")
        return "\n\n".join(parts) + "\n"

    def _html(self, assets: dict[int, Path]) -> str:
        blocks: list[dict[str, Any]] = []
        for block in self._blocks:
            if isinstance(block, _Heading):
                blocks.append({"kind": "heading", "level": block.level, "text_html": inline_html(block.text)})
            elif isinstance(block, _Text):
                blocks.append({"kind": "text", "html": markdown_to_html(block.markdown)})
            elif isinstance(block, _Table):
                blocks.append({"kind": "table", "html": html_table(block.df, block.caption, block.float_format)})
            elif isinstance(block, _Figure):
                blocks.append(
                    {
                        "kind": "figure",
                        "alt": block.caption,
                        "caption_html": inline_html(block.caption),
                        "png_base64": base64.b64encode(assets[id(block)].read_bytes()).decode("ascii"),
                    }
                )
        return _template("report.html.j2").render(title=self.title, blocks=blocks)


# --- cells and tables -------------------------------------------------------------------------


def format_cell(value: Any, float_format: str = "{:.1f}") -> str:
    """One table cell as text: '' for NaN/None/NA, floats with ``float_format``, the rest ``str``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, (bool,)):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return "" if math.isnan(float(value)) else float_format.format(float(value))
    return str(value)


def _is_numeric_column(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _column_name(col: Any) -> str:
    return " / ".join(str(c) for c in col) if isinstance(col, tuple) else str(col)


def markdown_table(df: pd.DataFrame, caption: str | None = None, float_format: str = "{:.1f}") -> str:
    """``df`` as a Markdown pipe table (index not shown; numeric columns right-aligned).

    ``|`` in a cell is escaped as ``\\|`` and line breaks become spaces, so a cell never breaks
    the table. The caption, if any, is an italic line above the table.
    """

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")

    header = [cell(_column_name(c)) for c in df.columns]
    align = ["---:" if _is_numeric_column(df[c]) else "---" for c in df.columns] if len(df.columns) else []
    lines = []
    if caption:
        lines += [f"*{caption}*", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(align) + " |")
    for row in df.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(cell(format_cell(v, float_format)) for v in row) + " |")
    return "\n".join(lines)


def html_table(df: pd.DataFrame, caption: str | None = None, float_format: str = "{:.1f}") -> str:
    """``df`` as an HTML table with an optional caption; every cell escaped, index not shown.

    Cells are :func:`format_cell` text; cells of numeric columns get ``class="num"`` (right-aligned).
    """
    numeric = [_is_numeric_column(df[c]) for c in df.columns]
    rows = [
        [(format_cell(v, float_format), num) for v, num in zip(row, numeric)]
        for row in df.itertuples(index=False, name=None)
    ]
    return (
        _template("table.html.j2")
        .render(
            caption_html=inline_html(caption) if caption else "",
            header=[_column_name(c) for c in df.columns],
            rows=rows,
        )
        .strip()
    )


# --- Markdown and templates -----------------------------------------------------------------


class _SafeHTMLRenderer(mistune.HTMLRenderer):
    """mistune's HTML renderer with raw HTML escaped, unsafe links left as their text and images
    turned into links (an ``<img>`` would make the page fetch something)."""

    SAFE_PROTOCOLS = tuple(f"{scheme}:" for scheme in SAFE_LINK_SCHEMES)
    GOOD_DATA_PROTOCOLS = ()

    def __init__(self) -> None:
        super().__init__(escape=True)

    def link(self, text: str, url: str, title: str | None = None) -> str:
        if self.sanitize_url(url) != url:  # mistune's verdict: "#harmful-link"
            return text
        return super().link(text, url, title)

    def image(self, text: str, url: str, title: str | None = None) -> str:
        return self.link(text or mistune.escape(url), url, title)


_MARKDOWN = mistune.create_markdown(renderer=_SafeHTMLRenderer())


def markdown_to_html(markdown: str) -> str:
    """Markdown paragraphs, lists, ... to HTML (mistune); raw HTML escaped, unsafe links as text."""
    return _MARKDOWN(markdown).strip()


def inline_html(text: str) -> str:
    """One line of Markdown (emphasis, code, links) to HTML without a ``<p>``, as in a heading or
    caption; escaped and with the same link rules as :func:`markdown_to_html`."""
    tokens = _MARKDOWN.inline(text.strip(), {})
    return _MARKDOWN.renderer.render_tokens(tokens, mistune.BlockState())


_JINJA = jinja2.Environment(
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
)


@functools.lru_cache(maxsize=None)
def _template(name: str) -> jinja2.Template:
    """``helpers/reporting/templates/<name>`` (package data) as an autoescaping Jinja2 template."""
    source = resources.files("helpers.reporting").joinpath("templates", name).read_text(encoding="utf-8")
    return _JINJA.from_string(source)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:80]


# --- the environment --------------------------------------------------------------------------


def how_obtained(runs: pd.DataFrame, profile: str) -> list[str]:
    """Markdown bullet lines saying how the numbers of a profile's runs were obtained: the
    profile's schedule and seeds, how many runs finished, failed or are unfinished, the corpus
    checksum(s) from the runs' records, which checkpoint "best" and "last" mean, and the
    environment (:func:`environment_lines`). ``runs``: :func:`helpers.experiments.collect.collect_runs`."""
    from helpers.experiments.grid import PROFILES
    from helpers.core.fileio import read_json

    prof = PROFILES[profile]
    cfg = prof.config
    finished = runs.loc[runs["status"] == "finished", "run_dir"] if len(runs) else []
    corpora = {(read_json(Path(d) / "record.json").get("corpus") or {}).get("checksum") for d in finished}
    count = {s: int((runs["status"] == s).sum()) if len(runs) else 0 for s in ("finished", "failed", "unfinished")}
    steps = (
        f"{cfg.get('min_iterations', 0)}-{cfg['iterations']} steps (each run stops at the first devel evaluation "
        "where its devel curve is flat, which also makes its last devel score slightly optimistic)"
        if cfg.get("stop_when_flat")
        else f"{cfg['iterations']} steps"
    )
    lines = [
        f"- Profile **{profile}**: {steps} of {cfg['batch_size']} clips per run, devel evaluation "
        f"every {cfg['eval_every']} steps, EMA from step {cfg['ema_start']} (decay {cfg['ema_decay']}), "
        f"seeds {prof.seeds} (Table 2, fusion), {prof.ablation_seeds} (ablation).",
        f"- Runs: {count['finished']} finished, {count['failed']} failed, {count['unfinished']} unfinished; "
        f"corpus checksum(s): {', '.join(sorted(c or '?' for c in corpora))}.",
        "- **best** = the checkpoint with the best devel UAR among all evaluations of a run: its devel score "
        "is optimistic (selected on devel), like the paper's. **last** = the model after the final step. "
        "Test scores are never selected on.",
        "- Cells with several seeds read `mean ± std (min-max, n=seeds)`, with a 95 % bootstrap interval of the "
        "mean only from five seeds on; the paper reports one run per row.",
    ]
    if profile == "demo":
        lines.append(
            "- **Demo profile**: minutes of CPU training of narrowed networks (labelled with their width) on a "
            "210-clip demo corpus of other species than the challenge's. Its numbers show how the ingredients "
            "behave on small data beside their seed spread; they are not comparable with the paper's."
        )
    return lines + [f"- {line}" for line in environment_lines()]


def environment_lines() -> list[str]:
    """Human-readable lines saying when, from which commit, with what and on what a report was made.

    Date (UTC, ISO 8601), git commit (``+dirty`` when the tree had changes), Python, the versions
    of :data:`ENVIRONMENT_PACKAGES`, and the machine (OS, processor, cores, torch threads, GPU).
    """
    versions = library_versions()
    machine = machine_record()
    lines = [
        f"date (UTC): {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"git commit: {git_commit() or 'unknown (not a git checkout)'}",
        f"python: {machine.get('python') or platform.python_version()}",
    ]
    for name in ENVIRONMENT_PACKAGES:
        lines.append(f"{name}: {versions.get(name) or 'not installed'}")
    parts = [str(machine.get("platform")), str(machine.get("processor"))]
    if machine.get("cpu_count"):
        parts.append(f"{machine['cpu_count']} CPU cores")
    if "torch_threads" in machine:
        parts.append(f"{machine['torch_threads']} torch threads")
    if "cuda" in machine:
        parts.append(f"GPU: {machine.get('gpu', 'CUDA device')}" if machine["cuda"] else "no GPU")
    lines.append("machine: " + ", ".join(parts))
    return lines
