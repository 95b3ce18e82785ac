"""Coiote ``deviceEvents/handler``: device events pushed to webhooks, Kafka and MQTT
through a persistent outbox (see ``outbox`` and ``delivery``)."""
