"""The dashboards' entry: `streamlit run dashboards/app.py` (what `ticketflow up` runs).

Shared by every page: the title, signing in through the API, the "data as of" line, and the
pages the caller's role may see. A page nobody's role lists is never offered; each page checks
the role again on its own.
"""

from __future__ import annotations

import streamlit as st
from clickhouse_connect.driver.exceptions import ClickHouseError

from dashboards import queries
from dashboards.signin import Caller, SignInError, api_url, sign_in, who_is
from ticketflow.settings import get_settings

API = api_url(get_settings())

st.set_page_config(
    page_title="TicketFlow", page_icon=":material/confirmation_number:", layout="wide"
)


def _current_caller() -> Caller | None:
    """The signed-in caller, asked afresh of the API; None when signed out or the token ended."""
    caller: Caller | None = st.session_state.get("caller")
    if caller is None:
        return None
    try:
        fresh = who_is(API, caller.token)
    except SignInError as exc:
        st.error(str(exc))
        st.stop()
    if fresh is None:
        del st.session_state["caller"]
        st.warning("Your session has ended; please sign in again.")
        return None
    st.session_state["caller"] = fresh
    return fresh


def _sign_in() -> None:
    st.title("TicketFlow")
    with st.form("sign-in"):
        email = st.text_input("E-mail", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            st.session_state["caller"] = sign_in(API, email.strip(), password)
        except SignInError as exc:
            st.error(str(exc))
        else:
            st.rerun()


def _sign_out() -> None:
    st.session_state.pop("caller", None)


def _nothing_to_see() -> None:
    caller: Caller = st.session_state["caller"]
    st.title("TicketFlow")
    st.error(
        f"There is no dashboard for your role ({caller.role}). "
        "The finance page is for finance and admin accounts."
    )


def _data_as_of() -> None:
    try:
        built = queries.marts_built_at()
    except ClickHouseError as exc:  # the warehouse is down or unreachable: say so, go on
        st.caption(f"The warehouse does not answer ({str(exc).splitlines()[0]}).")
        return
    st.caption(f"Data as of {built} UTC (the marts' last build)." if built else "No marts yet.")


caller = _current_caller()
if caller is None:
    # Only the sign-in page exists for someone signed out, whatever URL they opened.
    st.navigation([st.Page(_sign_in, title="Sign in")], position="hidden").run()
    st.stop()

with st.sidebar:
    st.markdown(f"Signed in as **{caller.email}** ({caller.role})")
    st.button("Sign out", on_click=_sign_out)

pages = []
if caller.sees_finance:
    pages.append(st.Page("pages/finance.py", title="Finance", url_path="finance"))
if not pages:
    st.navigation([st.Page(_nothing_to_see, title="TicketFlow")], position="hidden").run()
    st.stop()

with st.sidebar:
    _data_as_of()
st.navigation(pages).run()
