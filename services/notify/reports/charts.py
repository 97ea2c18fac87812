"""Charts drawn on the server as SVG (no script, no external asset): bars by area and a trend over time.
Each chart has a title and a description for assistive technology and sits beside the table it draws,
which stays the accessible version. A suppressed count is drawn as an empty marker labelled "<5", never
as a bar whose length would give the number away."""

from __future__ import annotations

from dataclasses import dataclass

from services.notify.reports.suppression import PRIMARY_MARK, PublishedTable


@dataclass(frozen=True)
class Bar:
    label: str
    text: str  # what is shown: a number, "<5" or "*"
    length: float  # 0 for a hidden count
    position: float


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    description: str
    horizontal: bool
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_space: int


def bar_chart(table: PublishedTable, column: str, *, title: str, horizontal: bool = True,
              limit: int = 40) -> Chart | None:
    """Bars for one column of a table (its total row left out); ``None`` when there is nothing to draw."""
    index = table.columns.index(column)
    rows = [(label, cells[index]) for label, cells in table.rows if label != "Total"][:limit]
    if not rows:
        return None
    numbers = [int(text) for _, text in rows if text.isdigit()]
    top = max(numbers, default=0) or 1
    shown = ", ".join(f"{label}: {text}" for label, text in rows)
    description = f"{title}. {shown}. {PRIMARY_MARK} means a count from 1 to 4, hidden to protect survivors."
    if horizontal:
        label_space, span, step = 260, 360, 26
        bars = tuple(Bar(label, text, span * int(text) / top if text.isdigit() else 0, 10 + i * step)
                     for i, (label, text) in enumerate(rows))
        return Chart(table.key, title, description, True, bars, label_space + span + 60, 20 + len(rows) * step,
                     label_space)
    span, step = 200, max(24, min(60, 640 // len(rows)))
    bars = tuple(Bar(label, text, span * int(text) / top if text.isdigit() else 0, 50 + i * step)
                 for i, (label, text) in enumerate(rows))
    return Chart(table.key, title, description, False, bars, 70 + len(rows) * step, span + 80, step)
