"""What real mainnet answers look like, for tests that check the fake and the scenarios copy them.

Key orders come from answers recorded from mainnet; the two addresses are real ones, used as arbitrary users.
"""

from __future__ import annotations

ALICE = "0x4a8a68b2ec7c67cbb79060d98157b68c47eba0e6"
BOB = "0x654086857e1fad6dcf05cf6695cce51ea3984268"

# Key order of a real mainnet fill / trade, optional keys excluded.
REAL_FILL_KEYS = [
    "coin",
    "px",
    "sz",
    "side",
    "time",
    "startPosition",
    "dir",
    "closedPnl",
    "hash",
    "oid",
    "crossed",
    "fee",
    "tid",
    "feeToken",
]
OPTIONAL_FILL_KEYS = {"cloid", "liquidation", "builderFee", "twapId"}
REAL_TRADE_KEYS = ["coin", "side", "px", "sz", "time", "hash", "tid", "users"]
