"""Tests of helpers.reporting.report: the HTML is self-contained and escaped (Jinja2 autoescape, mistune
with raw HTML escaped and unsafe links dropped), the Markdown has pipe tables and links to copied PNGs,
empty cells stay empty, and writes are atomic."""

from __future__ import annotations

import base64
import re
from importlib import resources

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from helpers.reporting import report as report_module
from helpers.experiments.grid import PROFILES
from helpers.reporting.report import (
    Report,
    environment_lines,
    how_obtained,
    format_cell,
    html_table,
    inline_html,
    markdown_table,
    markdown_to_html,
)

#: The 8 bytes every PNG file starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def png(tmp_path):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    path = tmp_path / "inputs" / "curve.png"
    path.parent.mkdir()
    fig.savefig(path, dpi=30, format="png")
    plt.close(fig)
    return path


def results_table() -> pd.DataFrame:
    return pd.DataFrame(
        {"model": ["CNN10-16k", "ResNet22|8k"], "devel UAR": [91.234, np.nan], "paper": [None, 88.8], "seeds": [3, 2]},
        index=["x", "y"],
    )


def build_report(png) -> Report:
    report = Report("Results <draft>")
    report.heading("Model comparison")
    report.text(
        "Devel UAR, **best** checkpoint, *optimistic*. `code <b>` and "
        "[the paper](https://example.org/paper).\n\nA trap: <script>alert(1)</script>\n\n"
        "- first point\n* second point"
    )
    report.table(results_table(), caption="Ours beside the paper")
    report.figure(png, caption="A PNG from disk")
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.bar([0, 1], [1, 2])
    report.figure(fig, caption="A live figure", name="bars")
    plt.close(fig)
    return report


def test_write_returns_both_paths_and_leaves_no_temporaries(tmp_path, png):
    out = tmp_path / "report"
    paths = build_report(png).write(out)
    assert paths == {"markdown": out / "report.md", "html": out / "report.html"}
    assert all(p.is_file() for p in paths.values())
    everything = [p for p in out.rglob("*")]
    assert not [p for p in everything if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert sorted(p.name for p in (out / "report-assets").iterdir()) == ["bars.png", "curve.png"]


def test_html_is_self_contained_and_escaped(tmp_path, png):
    page = build_report(png).write(tmp_path, stem="r")["html"].read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2
    assert all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in images)
    assert "report-assets" not in page and "r-assets" not in page  # nothing to fetch
    # The paragraph's script is text, not code; the title is escaped too.
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>Results &lt;draft&gt;</title>" in page
    # Inline markup and lists.
    assert "<strong>best</strong>" in page and "<em>optimistic</em>" in page
    assert "<code>code &lt;b&gt;</code>" in page
    assert '<a href="https://example.org/paper">the paper</a>' in page
    assert "<li>first point</li>" in page and "<li>second point</li>" in page
    # The table: caption, values formatted, NaN/None empty, index not shown.
    assert "<caption>Ours beside the paper</caption>" in page
    assert ">91.2<" in page and ">88.8<" in page and ">3<" in page
    assert "ResNet22|8k" in page
    assert '<td class="num"></td>' in page
    assert ">x<" not in page


def test_markdown_has_pipe_table_and_relative_image_links(tmp_path, png):
    md_path = build_report(png).write(tmp_path)["markdown"]
    md = md_path.read_text(encoding="utf-8")
    assert md.startswith("# Results <draft>\n")
    assert "## Model comparison" in md
    lines = md.splitlines()
    header = lines.index("| model | devel UAR | paper | seeds |")
    assert lines[header + 1] == "| --- | ---: | ---: | ---: |"
    assert lines[header + 2] == "| CNN10-16k | 91.2 |  | 3 |"
    assert lines[header + 3] == "| ResNet22\\|8k |  | 88.8 | 2 |"
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == ["report-assets/curve.png", "report-assets/bars.png"]
    for link in links:
        target = md_path.parent / link
        assert target.is_file() and target.read_bytes().startswith(PNG_SIGNATURE)
    assert (md_path.parent / links[0]).read_bytes() == png.read_bytes()


def test_missing_figure_names_path_and_section_and_writes_nothing(tmp_path):
    report = Report("R")
    report.heading("Confusions")
    missing = tmp_path / "figures" / "confusion.png"
    report.figure(missing, caption="Confusion of the best run")
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError) as err:
        report.write(out)
    assert str(missing) in str(err.value)
    assert "Confusions" in str(err.value)
    assert not out.exists()


def test_same_png_names_do_not_overwrite_each_other(tmp_path, png):
    other = tmp_path / "other" / "curve.png"
    other.parent.mkdir()
    other.write_bytes(png.read_bytes() + b"different")
    report = Report("R")
    report.figure(png, caption="one")
    report.figure(other, caption="two")
    report.write(tmp_path / "out")
    assets = tmp_path / "out" / "report-assets"
    assert sorted(p.name for p in assets.iterdir()) == ["curve-2.png", "curve.png"]
    assert (assets / "curve-2.png").read_bytes().endswith(b"different")


def test_rewrite_replaces_previous_report(tmp_path):
    report = Report("R")
    report.text("first")
    paths = report.write(tmp_path)
    report.text("second")
    report.write(tmp_path)
    assert "second" in paths["markdown"].read_text() and "second" in paths["html"].read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.md"]


def test_format_cell():
    assert format_cell(np.nan) == "" and format_cell(None) == "" and format_cell(pd.NA) == ""
    assert format_cell(np.float32(2.25), "{:.2f}") == "2.25"
    assert format_cell(np.int64(7)) == "7"
    assert format_cell(True) == "True"
    assert format_cell("a") == "a"


def test_markdown_table_escapes_and_breaks_no_rows():
    df = pd.DataFrame({"a|b": ["x|y", "two\nlines"]})
    assert markdown_table(df, caption="C").splitlines() == [
        "*C*",
        "",
        "| a\\|b |",
        "| --- |",
        "| x\\|y |",
        "| two lines |",
    ]


def test_inline_html_rules():
    assert inline_html("`**not bold**`") == "<code>**not bold**</code>"
    assert inline_html("**b** and *i*") == "<strong>b</strong> and <em>i</em>"
    assert "<p>" not in inline_html("a caption")
    # Unsafe schemes are not turned into links; the label stays as text.
    for url in (
        "javascript:alert(1)",
        "JavaScript:alert",
        "<java\tscript:alert(1)>",
        "< javascript:alert(1)>",
        "<\x01javascript:alert(1)>",
        "javascript&colon;alert(1)",
        "%6Aavascript:alert(1)",
        "vbscript:x",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
    ):
        out = inline_html(f"[x]({url})")
        assert "<a " not in out and "href" not in out and "<script" not in out, (url, out)
    assert "<a " not in inline_html("<javascript:alert(1)>")  # autolink
    assert "<a " not in markdown_to_html("[x][r]\n\n[r]: javascript:alert(1)")  # reference link
    # Safe and scheme-less links are kept; a quote cannot leave the href attribute.
    assert inline_html("[p](https://example.org/a?b=1&c=2)") == '<a href="https://example.org/a?b=1&amp;c=2">p</a>'
    assert inline_html("[m](mailto:a@b.org)") == '<a href="mailto:a@b.org">m</a>'
    assert inline_html("[r](#anchor) [s](rel/page.html)") == '<a href="#anchor">r</a> <a href="rel/page.html">s</a>'
    out = inline_html('[x](a.html"onclick=1)')
    assert out.startswith('<a href="a.html') and '"onclick' not in out and "x</a>" in out


def test_markdown_to_html_paragraphs_lists_and_raw_html():
    out = markdown_to_html("one\ntwo\n\n- a\n  continued\n- b\n\nafter")
    assert out == "<p>one\ntwo</p>\n<ul>\n<li>a\ncontinued</li>\n<li>b</li>\n</ul>\n<p>after</p>"
    assert markdown_to_html("<script>alert(1)</script>") == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert "<img" not in markdown_to_html('x <img src=x onerror="alert(1)"> y')


def test_script_in_text_or_table_cell_comes_out_escaped(tmp_path):
    report = Report("R")
    report.heading("Heading <script>alert(1)</script>")
    report.text('Text <script>alert(2)</script> and <b onclick="x">bold?</b>')
    report.table(
        pd.DataFrame({"<script>h</script>": ["<script>alert(3)</script>", 'a"b<c>&d']}),
        caption="Caption <script>alert(4)</script>",
    )
    paths = report.write(tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script" not in page and "<b onclick" not in page
    for n in (1, 2, 3, 4):
        assert f"&lt;script&gt;alert({n})&lt;/script&gt;" in page
    assert "<th>&lt;script&gt;h&lt;/script&gt;</th>" in page
    assert "<td>a&#34;b&lt;c&gt;&amp;d</td>" in page
    # The Markdown twin keeps the text as written.
    assert "Text <script>alert(2)</script>" in paths["markdown"].read_text(encoding="utf-8")


def test_javascript_link_is_not_a_link(tmp_path):
    report = Report("R")
    report.heading("See [h](javascript:alert(1))")
    report.text("Click [here](javascript:alert(2)) or [there](https://example.org).")
    report.table(pd.DataFrame({"a": [1]}), caption="[c](javascript:alert(3))")
    page = report.write(tmp_path)["html"].read_text(encoding="utf-8")
    assert "javascript:" not in page.lower() and "harmful" not in page
    assert "<h2>See h</h2>" in page and "<p>Click here or " in page and "<caption>c</caption>" in page
    assert '<a href="https://example.org">there</a>' in page


def test_images_in_text_become_links_so_the_page_fetches_nothing(tmp_path):
    report = Report("R")
    report.text("![a plot](https://example.org/plot.png) ![bad](javascript:alert(1))")
    page = report.write(tmp_path)["html"].read_text(encoding="utf-8")
    assert "<img" not in page
    assert '<a href="https://example.org/plot.png">a plot</a>' in page
    assert "javascript:" not in page


def test_html_table_marks_numeric_columns_and_formats_like_markdown_table():
    df = pd.DataFrame({"model": ["a", "b"], "uar": [91.25, np.nan], "n": [3, 4]})
    out = html_table(df, caption="*C*", float_format="{:.2f}")
    assert out.startswith("<table>\n<caption><em>C</em></caption>") and out.endswith("</table>")
    assert '<tr><td>a</td><td class="num">91.25</td><td class="num">3</td></tr>' in out
    assert '<tr><td>b</td><td class="num"></td><td class="num">4</td></tr>' in out
    assert "| a | 91.25 | 3 |" in markdown_table(df, float_format="{:.2f}")


def test_templates_are_package_data():
    templates = resources.files("helpers.reporting").joinpath("templates")
    assert templates.joinpath("report.html.j2").is_file() and templates.joinpath("table.html.j2").is_file()


def test_a_failed_write_leaves_the_previous_report_intact(tmp_path, monkeypatch):
    report = Report("R")
    report.text("first")
    paths = report.write(tmp_path)
    before = {k: p.read_bytes() for k, p in paths.items()}

    def broken(markdown):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(report_module, "markdown_to_html", broken)
    report.text("second")
    with pytest.raises(RuntimeError, match="rendering failed"):
        report.write(tmp_path)
    assert {k: p.read_bytes() for k, p in paths.items()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.md"]


def test_table_rejects_a_bad_float_format():
    with pytest.raises(ValueError, match="float_format"):
        Report("R").table(pd.DataFrame({"a": [1.0]}), float_format="{:.1q}")


def test_environment_lines():
    lines = environment_lines()
    keys = [line.split(":", 1)[0] for line in lines]
    assert keys == ["date (UTC)", "git commit", "python", "torch", "numpy", "pandas", "scikit-learn", "machine"]
    assert re.match(r"date \(UTC\): \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", lines[0])
    assert all(line.split(":", 1)[1].strip() for line in lines)


def test_how_obtained_counts_runs_and_reads_checksums(tmp_path):
    import json

    done = tmp_path / "a"
    done.mkdir()
    (done / "record.json").write_text(json.dumps({"corpus": {"checksum": "abc123"}}))
    runs = pd.DataFrame(
        {
            "run_dir": [str(done), str(tmp_path / "b"), str(tmp_path / "c")],
            "status": ["finished", "failed", "unfinished"],
        }
    )
    lines = how_obtained(runs, "demo")
    text = "\n".join(lines)
    assert all(line.startswith("- ") for line in lines)
    assert "1 finished, 1 failed, 1 unfinished" in text and "abc123" in text
    demo = PROFILES["demo"].config
    assert f"{demo['min_iterations']}-{demo['iterations']} steps (each run stops" in text
    assert "clips per run" in text and "not comparable" in text and "torch" in text
    paper = "\n".join(how_obtained(runs, "paper"))
    assert "not comparable" not in paper and "60000 steps of 32 clips" in paper
