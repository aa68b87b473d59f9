"""A simulated Hyperliquid for tests and the offline demo: a fake info API, scenarios with known truth, and a
writer of node-format fill files. Nothing here talks to the real exchange."""
