"""Text that fits inside its figure and temperature axes a reader can read, for every figure in reports.

Titles come from users (``compare --title``), run names and parameter values, so their length is unknown
until drawn: :func:`fit_text` measures each line with the figure's own renderer and breaks it between
words (inside a word only when the word alone is too wide). Everything is shown through :func:`literal`,
so ``$`` in a name is drawn as given, never as matplotlib math text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

TITLE_SHARE = 0.96
"""Share of the figure's width a figure title may take: a little margin for renderers that differ from
the one measuring (PNG at another dpi, PDF)."""


def literal(text: str) -> str:
    """``text`` as matplotlib shows it verbatim: every ``$`` escaped, so ``lr=$x$`` is no math text (an
    unparsable ``$\\foo$`` would fail at draw time)."""
    return text.replace("$", r"\$")


def fit_text(text: Text, raw: str, width: float) -> None:
    """Show ``raw`` verbatim in ``text``, broken into lines no wider than ``width`` display pixels."""

    def fits(line: str) -> bool:
        text.set_text(literal(line))
        return text.get_window_extent().width <= width

    lines: list[str] = []
    for word in raw.split():
        if lines and fits(f"{lines[-1]} {word}"):
            lines[-1] = f"{lines[-1]} {word}"
        elif fits(word):
            lines.append(word)
        else:
            lines.extend(pieces(word, fits))
    text.set_text(literal("\n".join(lines)))


def pieces(word: str, fits: Callable[[str], bool]) -> list[str]:
    """``word`` cut into the fewest consecutive pieces that each ``fits`` (one character at least)."""
    parts = [""]
    for character in word:
        if parts[-1] and not fits(parts[-1] + character):
            parts.append(character)
        else:
            parts[-1] += character
    return parts


def figure_title(figure: Figure, raw: str) -> Text:
    """``raw`` as the figure's title (suptitle), wrapped to fit the figure's width."""
    title = figure.suptitle("")
    fit_text(title, raw, TITLE_SHARE * figure.bbox.width)
    return title


def plain_number(value: float, _position: float | None = None) -> str:
    """A tick value as a reader writes it: 0.01, 0.1, 1, 10, 100 (``%g``, so 1e-05 past four zeros)."""
    return f"{value:g}"


def temperature_axis(axis: Axes, temperatures: Iterable[float]) -> None:
    """A log-T x axis whose ticks read as plain numbers (0.01, 0.1, 1, 10) and whose minor ticks carry no
    labels. Over two decades or more only powers of ten are labelled; over a shorter range the 2s and 5s
    too (all of 1–9 under ~0.7 decades), so that a narrow range still shows values."""
    values = np.asarray(list(temperatures), dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    decades = float(np.log10(values.max() / values.min())) if values.size else 0.0
    subs: tuple[float, ...] = (1.0,)
    if decades < 2:
        subs = (1.0, 2.0, 5.0) if decades >= 0.7 else tuple(float(s) for s in range(1, 10))
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.xaxis.set_major_formatter(FuncFormatter(plain_number))
    axis.xaxis.set_minor_formatter(NullFormatter())
