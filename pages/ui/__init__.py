"""Small Streamlit helpers shared by the dashboard pages (Streamlit ignores this subfolder as a page)."""
