"""Plotly figures for the dashboards: plain functions of rows, no Streamlit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from dashboards.exports.reconciliation import STATUSES, Item

DAY_MS = 86_400_000  # a date axis measures bar widths in milliseconds


def variance_by_day(items: Iterable[Item]) -> go.Figure:
    """Net variance (actual - expected, major units) per UTC day, stacked by status, one panel
    per currency (amounts in different currencies are never added up)."""
    totals: dict[tuple[date, str, str], Decimal] = defaultdict(Decimal)
    for item in items:
        if item.occurred_at is None:
            continue
        totals[(item.occurred_at.date(), item.currency, item.status)] += item.variance
    frame = pd.DataFrame(
        [
            # Plotted as floats; the tables and the exports keep the exact decimals.
            {"day": day, "currency": currency, "status": status, "variance": float(variance)}
            for (day, currency, status), variance in sorted(totals.items())
        ],
        columns=["day", "currency", "status", "variance"],
    )
    figure = px.bar(
        frame,
        x="day",
        y="variance",
        color="status",
        facet_col="currency",
        category_orders={"status": list(STATUSES)},
        labels={"day": "day (UTC)", "variance": "variance (actual - expected net)"},
    )
    figure.update_yaxes(matches=None, showticklabels=True)  # each currency on its own scale
    figure.update_traces(width=0.8 * DAY_MS)  # a day wide, also where a panel has one day
    figure.for_each_annotation(lambda a: a.update(text=a.text.removeprefix("currency=")))
    figure.update_layout(barmode="relative", legend_title_text="status", margin={"t": 40})
    return figure
