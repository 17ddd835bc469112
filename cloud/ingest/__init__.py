"""Ingest: device batches over MQTT in, validated and de-duplicated events out to storage.

`worker` runs the flow (topic -> envelope -> registered device -> consent -> storage -> hooks),
`rows` is the one builder of storage rows from the contract's decoded messages (and the consent
rule on personal fields), `events` owns the ``events`` table and the typed `StoredBatch` that
carries a batch to storage, `device_registry` and `dead_letters` their tables,
`device_metrics` exports fleet health.
"""
