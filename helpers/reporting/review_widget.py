"""The review widget: one detection at a time, in JupyterLab (ipywidgets).

It shows the event's spectrogram with its span outlined and ``context`` seconds on each side, an
audio player of the same stretch, its label, score and why it was queued, and buttons for "call of
this label", "another label" (with a choice of label), "not a call", "unsure" and "skip", with back
and forward and how many are done and left. Keyboard: type into the small shortcut box (c call, o
other, n not a call, u unsure, s skip, b back, f forward). Everything it does goes through
:class:`helpers.evaluation.review.ReviewSession`, so each decision is on disk before the next event
shows.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import soundfile as sf

from helpers.evaluation.review import ReviewSession

SHORTCUTS = {"c": "call", "o": "other", "n": "not_call", "u": "unsure", "s": "skip", "b": "back", "f": "forward"}


class ReviewWidget:
    """``ReviewWidget(session, recordings, classes).widget`` is the box to display.

    ``recordings``: recording name (as in the events) -> its audio file. ``classes``: the labels the
    "another label" choice offers."""

    def __init__(
        self, session: ReviewSession, recordings: Mapping[str, str | Path], classes: Sequence[str], context: float = 1.0
    ) -> None:
        import ipywidgets as w

        self.session, self.recordings, self.context = session, {k: Path(v) for k, v in recordings.items()}, context
        self.header = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(width="100%", max_width="760px"))
        self.audio = w.Audio(format="wav", autoplay=False, loop=False)
        self.other_label = w.Dropdown(options=list(classes), description="label:", layout=w.Layout(width="220px"))
        self.buttons = {
            "call": w.Button(description="call of this label (c)", button_style="success"),
            "other": w.Button(description="another label (o)", button_style="info"),
            "not_call": w.Button(description="not a call (n)", button_style="danger"),
            "unsure": w.Button(description="unsure (u)", button_style="warning"),
            "skip": w.Button(description="skip (s)"),
            "back": w.Button(description="◀ back (b)"),
            "forward": w.Button(description="forward (f) ▶"),
        }
        for name, button in self.buttons.items():
            button.on_click(lambda _, name=name: self.act(name))
        self.keys = w.Text(placeholder="shortcut keys: c o n u s b f", layout=w.Layout(width="220px"))
        self.keys.observe(self._on_key, names="value")
        self.message = w.HTML()
        self.widget = w.VBox(
            [
                self.header,
                self.image,
                self.audio,
                w.HBox([self.buttons["call"], self.buttons["other"], self.other_label]),
                w.HBox([self.buttons[k] for k in ("not_call", "unsure", "skip")]),
                w.HBox([self.buttons["back"], self.buttons["forward"], self.keys]),
                self.message,
            ]
        )
        self.show()

    def _on_key(self, change) -> None:
        text = change["new"]
        if not text:
            return
        self.keys.value = ""
        action = SHORTCUTS.get(text[-1].lower())
        if action:
            self.act(action)

    def act(self, action: str) -> None:
        """Do what a button does: a decision (written at once), or ``back`` / ``forward``."""
        try:
            if action == "back":
                self.session.back()
            elif action == "forward":
                self.session.forward()
            else:
                self.session.decide(action, self.other_label.value if action == "other" else None)
            self.message.value = ""
        except (IndexError, ValueError) as exc:
            self.message.value = f"<span style='color:#b00'>{exc}</span>"
        self.show()

    def show(self) -> None:
        """Draw the current event (or say the queue is finished)."""
        import matplotlib.pyplot as plt

        from helpers.recordings.stream import read_segment
        from helpers.reporting.plots import plot_event_spectrogram

        p = self.session.progress()
        event = self.session.current()
        if event is None:
            self.header.value = f"<b>Review finished</b>: {p['done']} of {p['total']} decided."
            for name, button in self.buttons.items():
                button.disabled = name != "back"  # only going back is left
            return
        for button in self.buttons.values():
            button.disabled = False
        others = [c for c in self.other_label.options if c != event["label"]]
        if others and self.other_label.value == event["label"]:
            self.other_label.value = others[0]  # "another label" offers another label first
        before = self.session.decision_of(event)
        self.header.value = (
            f"<b>event {p['position']} of {p['total']}</b> · <b>{event['label']}</b> score "
            f"{float(event['score']):.3f} · queued as <i>{event['reason']}</i> · {event['recording']} "
            f"{float(event['begin']):.1f}-{float(event['end']):.1f} s · {p['done']} done, {p['left']} left"
            + (f" · decided before: <b>{before}</b>" if before else "")
        )
        path = self.recordings.get(str(event["recording"]))
        if path is None:
            self.message.value = f"<span style='color:#b00'>no audio file for {event['recording']}</span>"
            return
        start = max(0.0, float(event["begin"]) - self.context)
        wave, rate = read_segment(path, start, float(event["end"]) + self.context)
        fig = plot_event_spectrogram(wave, rate, start, float(event["begin"]), float(event["end"]))
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=90)
        plt.close(fig)
        self.image.value = png.getvalue()
        sound = io.BytesIO()
        sf.write(sound, wave, rate, format="WAV", subtype="PCM_16")
        self.audio.value = sound.getvalue()
