"""``python -m spotify_assets.synth``: run the command line (see :mod:`spotify_assets.synth.cli`)."""

from spotify_assets.synth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
