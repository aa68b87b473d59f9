"""A simulated Hyperliquid for the offline demo and the tests: a fake info API, fake WebSocket feeds, scenarios
with known truth, and the demo's sample in the node's file format. Nothing here talks to the real exchange."""
