"""The ``django://`` kombu transport: channel, lease-based QoS and wake-up (storage layer)."""
