"""The HTTP API: `app.create_app(settings)` and one router module per domain."""
