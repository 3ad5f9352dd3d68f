"""Where the real test captures are."""

import os
from pathlib import Path

CAPTURES_DIR = Path(
    os.environ.get("SX_PCAP_DIR") or Path(__file__).resolve().parent / "data" / "pcap"
)
