"""Beside the pipeline, for operators: readiness, Prometheus metrics, redacting logs and the per-request access line.

Every stage may import it, so it imports only `queue` (for the deployment-wide gauges), `config`
and `errors`.
"""
