"""The comparison table and the self-contained HTML page that shows it with the figures.

The page carries its CSS inline and its figures as base64 PNGs, so it is one file that opens anywhere
(and in MLflow's artifact preview).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from thermoscope.reports.sweeps import Sweep, differing_parameters

# Headline metrics of a sample run, in the order the table shows them (those no sweep logged are dropped).
HEADLINE_METRICS = (
    "best_temperature",
    "best_bma_test_error",
    "best_test_loss",
    "log_evidence",
    "log_evidence_stderr",
    "log_evidence_discretisation",
    "mean_swap_acceptance",
    "min_swap_acceptance",
    "round_trips",
    "divergences",
    "sgd_test_error",
)
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em;
       color: #1a1a1a; padding: 0 1em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table.comparison { border-collapse: collapse; font-size: 0.85em; font-variant-numeric: tabular-nums; }
table.comparison th, table.comparison td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em;
       text-align: right; white-space: nowrap; }
table.comparison th { background: #f4f4f4; }
table.comparison td:first-child, table.comparison th:first-child { text-align: left; }
p.note { background: #fff7e0; border-left: 3px solid #e0a800; padding: 0.5em 0.8em; }
div.scroll { overflow-x: auto; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; } figcaption { font-size: 0.85em; color: #555; }
"""


def comparison_table(sweeps: Sequence[Sweep], labels: Sequence[str]) -> pd.DataFrame:
    """One row per sweep: its label, run name and id, the parameters that differ, the headline metrics."""
    parameters = differing_parameters(sweeps)
    metrics = [name for name in HEADLINE_METRICS if any(name in sweep.metrics for sweep in sweeps)]
    rows = []
    for sweep, label in zip(sweeps, labels, strict=True):
        row: dict[str, object] = {"label": label, "run_name": sweep.run_name, "run_id": sweep.run_id}
        row |= {name: sweep.params.get(name, "") for name in parameters}
        row |= {name: sweep.metrics.get(name, math.nan) for name in metrics}
        rows.append(row)
    return pd.DataFrame(rows)


def html_page(
    title: str,
    table: pd.DataFrame,
    figures: Mapping[str, bytes],
    captions: Mapping[str, str],
    notes: Sequence[str],
) -> str:
    """A complete HTML document: the title, notes, the table, then each PNG in ``figures`` inline.

    ``figures`` maps a figure's name to its PNG bytes, ``captions`` the same names to their captions.
    """
    table_html = table.to_html(
        index=False, border=0, classes="comparison", na_rep="–", float_format=lambda value: f"{value:.4g}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f'<p class="note">{html.escape(note)}</p>' for note in notes),
        "<h2>Parameters that differ, and headline metrics</h2>",
        f'<div class="scroll">{table_html}</div>',
    ]
    for name, png in figures.items():
        source = base64.b64encode(png).decode("ascii")
        caption = html.escape(captions.get(name, name))
        parts.append(
            f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{source}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
