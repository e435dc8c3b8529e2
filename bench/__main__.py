"""Run every benchmark: ``python -m bench`` (or ``make bench``). Each prints its own table
with the baseline it measured in the same run; docs/PERFORMANCE.md records the results."""

import sys

from bench import api_load, change_capture, settlement_load, ussd_load

if __name__ == "__main__":
    argv = sys.argv[:]
    sys.argv = [argv[0], "--rows", "2000", "--repeat", "3"]
    change_capture.main()
    sys.argv = [argv[0], "--seconds", "10"]
    api_load.main()
    sys.argv = [argv[0], "--callbacks", "10000", "--concurrency", "50"]
    settlement_load.main()
    sys.argv = [argv[0], "--seconds", "5", "--think-seconds", "5", "--warmup", "2", "--learners", "1000"]
    ussd_load.main()
