"""The dashboards' pages: scripts that `dashboards/app.py` runs through `st.navigation`."""
