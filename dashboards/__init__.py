"""What finance, organizers and analysts see: the Streamlit app, its charts and its exports.

Read-only on the warehouse's marts.
"""
