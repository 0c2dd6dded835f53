"""Server-side SVG bar charts of the dashboard's throughput, no script and no asset (edge layer)."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from djtasks.dashboard.stats import Bucket

WIDTH, HEIGHT, MARGIN = 720, 140, 24
#: One colour per series, stacked bottom to top.
SERIES = (("succeeded", "#3a9d23"), ("failed", "#ba2121"), ("retried", "#e0a800"))


def bar_chart(buckets: Sequence[Bucket], title: str, label_every: int) -> SafeString:
    """Stacked bars, one per bucket, with its counts in a tooltip; the axis labels every Nth."""
    peak = max([b.succeeded + b.failed + b.retried for b in buckets] + [1])
    width = (WIDTH - MARGIN) / max(len(buckets), 1)
    bars = []
    for index, bucket in enumerate(buckets):
        x = MARGIN + index * width
        bars.append(stacked_bar(bucket, x, width, peak))
        if index % label_every == 0:
            bars.append(format_html('<text x="{}" y="{}" font-size="9">{}</text>',
                                    num(x), HEIGHT + 12, bucket.start.strftime("%H:%M")))
    legend = format_html_join("", '<tspan fill="{}"> ■ {}</tspan>',
                              ((colour, name) for name, colour in SERIES))
    return format_html(
        '<svg class="djtasks-chart" role="img" aria-label="{}" width="{}" height="{}" '
        'viewBox="0 0 {} {}" xmlns="http://www.w3.org/2000/svg">'
        '<text x="{}" y="10" font-size="11">{} (max {}){}</text>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>{}</svg>',
        title, WIDTH, HEIGHT + 16, WIDTH, HEIGHT + 16, MARGIN, title, peak, legend,
        MARGIN, HEIGHT, WIDTH, HEIGHT, SafeString("".join(bars)))


def stacked_bar(bucket: Bucket, x: float, width: float, peak: int) -> SafeString:
    scale = (HEIGHT - 16) / peak
    y = float(HEIGHT)
    parts = []
    for name, colour in SERIES:
        height = getattr(bucket, name) * scale
        if height:
            y -= height
            parts.append(format_html('<rect x="{}" y="{}" width="{}" height="{}" '
                                     'fill="{}"/>', num(x), num(y), num(max(width - 1, 1)), num(height),
                                     colour))
    tip = format_html("<title>{}: {} succeeded, {} failed, {} retried</title>",
                      bucket.start.strftime("%Y-%m-%d %H:%M"), bucket.succeeded, bucket.failed,
                      bucket.retried)
    return format_html("<g>{}{}</g>", tip, SafeString("".join(parts)))


def num(value: float) -> str:
    """One decimal is enough for a pixel coordinate."""
    return f"{value:.1f}"
