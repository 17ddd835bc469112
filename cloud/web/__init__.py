"""The browser pages served by the API: Jinja2 templates and static JS/CSS (see api/pages.py)."""
