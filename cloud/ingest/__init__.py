"""Ingest: device batches over MQTT in, validated and de-duplicated events out to storage.

`worker` runs the flow (topic -> envelope -> registered device -> consent -> storage -> hooks),
`events` owns the ``events`` table, dead letters and the device registry, `event_text` cuts
each event's JSON out of the envelope bytes, `device_metrics` exports fleet health.
"""
