"""Reporting: figures (:mod:`.plots`), notebook display helpers (:mod:`.display`) and the
self-contained HTML + Markdown report (:mod:`.report`, rendered with Jinja2 and mistune)."""
