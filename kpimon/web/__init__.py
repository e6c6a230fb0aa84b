"""The HTTP face of kpimon: /metrics, the JSON API, health and readiness, the status page."""
