"""Run every benchmark: ``python -m bench [--postgres DSN] [--rows N]``."""

from bench.change_capture import main

if __name__ == "__main__":
    main()
