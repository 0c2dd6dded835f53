"""The worker: consume loop, executions, pools and features (processes layer)."""
