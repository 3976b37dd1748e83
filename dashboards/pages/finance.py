"""Finance: the reconciliation of payments and refunds against the processor, and its exports.

Filters narrow what the page shows; the downloads are the whole period's report, the files
`ticketflow report reconciliation --from FIRST --to LAST [--format xlsx]` writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pandas as pd
import streamlit as st

from dashboards import charts, queries
from dashboards.exports import reconciliation
from dashboards.exports.reconciliation import ITEM_COLUMNS, STATUSES, Period, ReportError
from dashboards.money import exponent

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SETTLED_OR_SETTLING = ("matched", "pending_payout")
DEFAULT_DAYS = 30


def _money(amount) -> str:
    """An exact amount in major units, thousands grouped (`1,234.50`, JPY `4,500`)."""
    return format(amount, ",f")


caller = st.session_state.get("caller")
if caller is None or not caller.sees_finance:  # the app lists this page for them only; still
    st.error("The finance page is for finance and admin accounts only.")
    st.stop()

st.title("Reconciliation")
st.caption(
    "Every payment and refund beside the processor's balance transaction and payout "
    f"(`{reconciliation.TABLE}`). Days are UTC; both ends of the period are included."
)

today = datetime.now(UTC).date()
picked = st.date_input(
    "Period (UTC)",
    value=(today - timedelta(days=DEFAULT_DAYS - 1), today),
    format="YYYY-MM-DD",
    key="period",
)
if len(picked) != 2:
    st.info("Pick the period's last day too.")
    st.stop()
period = Period(*picked)

try:
    items = queries.reconciliation_items(period.first_day, period.last_day)
except ReportError as exc:
    st.error(f"The reconciliation cannot be read: {exc}.")
    st.stop()

downloads = st.columns(2)
for column, fmt, mime in ((downloads[0], "csv", "text/csv"), (downloads[1], "xlsx", XLSX_MIME)):
    column.download_button(
        f"Download {fmt.upper()} ({period})",
        data=partial(queries.reconciliation_file, period.first_day, period.last_day, fmt),
        file_name=reconciliation.default_filename(period, fmt),
        mime=mime,
        on_click="ignore",
        help="The whole period, every currency and status: what `ticketflow report "
        f"reconciliation --from {period.first_day} --to {period.last_day}"
        f"{' --format xlsx' if fmt == 'xlsx' else ''}` writes.",
    )

filters = st.columns(2)
currencies = sorted({item.currency for item in items})
chosen_currencies = filters[0].multiselect("Currency", currencies, default=currencies)
chosen_statuses = filters[1].multiselect("Status", STATUSES, default=STATUSES)
shown = [i for i in items if i.currency in chosen_currencies and i.status in chosen_statuses]
if not shown:
    st.info(f"No reconciliation items dated {period} match these filters.")
    st.stop()

st.subheader("Summary")
summary = reconciliation.summarize(shown)
counts = st.columns(3)
counts[0].metric("Items", len(shown))
counts[1].metric("Matched", sum(1 for i in shown if i.status == "matched"))
# Matched but not paid out yet is normal: the next payout settles it.
counts[2].metric("To look at", sum(1 for i in shown if i.status not in SETTLED_OR_SETTLING))
summary_table = pd.DataFrame(
    [
        {
            "status": line.status,
            "currency": line.currency,
            "items": line.items,
            "expected net": _money(line.expected_net),
            "actual net": _money(line.actual_net),
            "variance": _money(line.variance),
        }
        for line in summary
    ]
)
st.table(summary_table, hide_index=True)

st.subheader("Variance by day")
st.plotly_chart(charts.variance_by_day(shown))

st.subheader("Items")
# A column has one number format: the most decimal places among the currencies shown.
places = max(exponent(item.currency) for item in shown)
formats = {
    "money": st.column_config.NumberColumn(format=f"%.{places}f"),
    "id": st.column_config.NumberColumn(format="%d"),
    "datetime": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", timezone="UTC"),
}
st.dataframe(
    pd.DataFrame([{c.header: c.value(item) for c in ITEM_COLUMNS} for item in shown]),
    hide_index=True,
    column_config={c.header: formats[c.kind] for c in ITEM_COLUMNS if c.kind in formats},
    placeholder="",
)
