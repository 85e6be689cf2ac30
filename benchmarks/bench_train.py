"""Moved: the training benchmark is ``python -m helpers bench`` (the helpers/bench/ package), same options."""

from helpers.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
