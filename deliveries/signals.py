"""Hooks for metrics and observers of endpoint protection.

Plain Django signals, sent synchronously in the worker that made the change,
so whoever counts them (Prometheus counters in ``config.metrics``, a test)
connects a receiver and needs nothing else. Receivers must be quick and must
not raise: they run inside delivery handling.

- ``circuit_transitioned``: a breaker changed state.
  kwargs: ``endpoint_uid``, ``tenant_id``, ``from_state``, ``to_state``
  (``closed`` / ``open`` / ``half_open``), ``reason`` (``consecutive_failures``,
  ``failure_rate``, ``cooldown_elapsed``, ``probe_failed``,
  ``probe_succeeded``), ``cooldown_seconds`` (when opening, else None).
- ``delivery_deferred``: a delivery was put back without an attempt.
  kwargs: ``endpoint_uid``, ``tenant_id``, ``delivery_uid``, ``reason``
  (``circuit_open``, ``rate_limited``, ``bulkhead``), ``seconds`` (the delay).
- ``operational_event_recorded``: an OperationalEvent row was written.
  kwargs: ``kind``, ``event_uid``, ``tenant_id``, ``endpoint_uid``.
"""

from __future__ import annotations

from django.dispatch import Signal

circuit_transitioned = Signal()
delivery_deferred = Signal()
operational_event_recorded = Signal()
