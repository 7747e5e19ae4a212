"""Where records come from: the webhook receiver, replay, and the demo simulator."""
