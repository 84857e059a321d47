"""Docker's health check of a worker: healthy while it is connected and consuming.

The worker touches HEALTH_FILE every few seconds from its consuming loop; a
file older than MAX_AGE seconds (or none) means it is not consuming.
"""

import os
import sys
import time

MAX_AGE = 30.0


def main() -> int:
    path = os.environ.get("HEALTH_FILE", "/tmp/worker-consuming")
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        print("not consuming yet (no health file)")
        return 1
    if age > MAX_AGE:
        print(f"not consuming for {age:.0f} s")
        return 1
    print("consuming")
    return 0


if __name__ == "__main__":
    sys.exit(main())
