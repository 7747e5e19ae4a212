"""Where records come from: the webhook receiver, the WebSocket client, the REST poller and replay."""
