"""The plumbing every Emulsion service shares: NATS (connect, the streams' reconciliation,
the pull loop, the job-records store), S3, the apiserver, settings, telemetry, health.

What travels on the wire (names, keys, messages, records) is `emulsion_contracts`'s; this
package talks to the servers that carry it.
"""
