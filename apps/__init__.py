"""Gradio and Streamlit front ends; UI only, all computation lives in core/."""
