"""``python -m finetune_kit.local.worker``: one worker process (the server's pool starts them)."""

from __future__ import annotations

import sys

from .process import main

if __name__ == "__main__":
    sys.exit(main())
