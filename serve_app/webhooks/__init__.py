"""Outbound webhooks: alert events as signed JSON, from a durable outbox, in order.

See :mod:`serve_app.webhooks.delivery` (outbox, senders, lease), :mod:`.payload` (what is
sent, signature) and :mod:`.admin` (status, dead letters, replay); docs/integrations.md.
"""
