"""A campaign report as one self-contained HTML page: the figures and three charts.

Charts are drawn by matplotlib (the ``report`` extra: ``pip install 'ovh-sms-worker[report]'``)
as SVG inlined in the page, text as paths: no script, no font, no image and no stylesheet is
loaded from anywhere, so the file opens offline and can be mailed as it is. The charts: the
delivery funnel (sent, delivered, failed, pending, opt-outs), the delivery-time distribution
(the histogram's buckets, percentiles marked) and the SMS sent per minute.
"""

from __future__ import annotations

import html
import io
import math
import re
from datetime import UTC, datetime
from typing import Any

from worker.campaigns.report import Report, table_rows
from worker.errors import UsageError

INSTALL_HINT = "pip install 'ovh-sms-worker[report]'"

#: Chart size, inches at 100 dpi (the SVG scales with the page).
CHART_SIZE = (8.0, 3.2)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.4em; } table { border-collapse: collapse; margin-bottom: 2em; }
td { padding: .2em 1em .2em 0; vertical-align: top; } td:first-child { color: #555; white-space: nowrap; }
figure { margin: 0 0 2em 0; } figcaption { font-weight: 600; margin-bottom: .4em; }
svg { width: 100%; height: auto; }
"""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UsageError(f"--html needs the plotting library of the report extra: {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "sms-worker", "font.size": 9})
    return plt


def _svg(plt: Any, figure: Any) -> str:
    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE: inlined in HTML


def _funnel(plt: Any, r: Report) -> str:
    labels = ["sent", "delivered", "failed", "expired", "pending", "opt-outs"]
    values = [r.sent, r.delivered, r.failed, r.expired, r.pending + r.unknown_reports, r.opt_outs]
    colors = ["#4c72b0", "#55a868", "#c44e52", "#dd8452", "#8c8c8c", "#8172b3"]
    figure, axes = plt.subplots(figsize=CHART_SIZE)
    bars = axes.barh(labels[::-1], values[::-1], color=colors[::-1])
    axes.bar_label(bars, labels=[f"{v:,}" for v in values[::-1]], padding=3)
    axes.set_xlabel("SMS")
    axes.set_xlim(0, max(values + [1]) * 1.15)
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(plt, figure)


def _edge_label(upper: float) -> str:
    return "longer" if math.isinf(upper) else f"<={upper:g}s"


def _delivery_time(plt: Any, r: Report) -> str:
    figure, axes = plt.subplots(figsize=CHART_SIZE)
    if r.delivery_histogram:
        labels = [_edge_label(upper) for upper, _ in r.delivery_histogram]
        axes.bar(labels, [n for _, n in r.delivery_histogram], color="#55a868")
        marks = [f"{p} {_edge_label(v)}" for p, v in r.delivery_s.items() if v is not None]
        axes.set_title("  ".join(marks), fontsize=9, loc="left")
    else:
        axes.text(0.5, 0.5, "no delivery report yet", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("delivered within (seconds after sending)")
    axes.set_ylabel("SMS")
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(plt, figure)


def _sends_over_time(plt: Any, r: Report) -> str:
    figure, axes = plt.subplots(figsize=CHART_SIZE)
    if r.sends_per_minute:
        times = [datetime.fromtimestamp(at, UTC) for at, _ in r.sends_per_minute]
        axes.bar(times, [n for _, n in r.sends_per_minute], width=1 / 24 / 60 * 0.9, align="edge", color="#4c72b0")
        axes.xaxis_date()
        figure.autofmt_xdate()
    else:
        axes.text(0.5, 0.5, "nothing sent yet", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("minute (UTC)")
    axes.set_ylabel("SMS sent")
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(plt, figure)


def render(report: Report) -> str:
    """The page, as text (UTF-8 when written)."""
    plt = _pyplot()
    charts = [
        ("funnel", "Delivery funnel", _funnel(plt, report)),
        ("delivery-time", "Delivery time", _delivery_time(plt, report)),
        ("sends-over-time", "Sends over time", _sends_over_time(plt, report)),
    ]
    rows = "\n".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(value)}</td></tr>" for name, value in table_rows(report)
    )
    figures = "\n".join(
        f'<figure id="{key}"><figcaption>{html.escape(title)}</figcaption>\n{svg}</figure>'
        for key, title, svg in charts
    )
    title = f"Campaign {report.tag} on {report.service}"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
        f"<table>\n{rows}\n</table>\n{figures}\n</body></html>\n"
    )


def external_references(page: str) -> list[str]:
    """Anything in ``page`` a browser would fetch from elsewhere (none, by construction)."""
    found = re.findall(r"""(?:src|href)\s*=\s*["'](?!#|data:)([^"']+)["']""", page)
    found += re.findall(r"""url\(\s*["']?(?!#|data:)([^)"']+)""", page)
    found += re.findall(r"@import\s+[^;]+", page)
    return found
