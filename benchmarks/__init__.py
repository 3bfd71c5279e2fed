"""Performance harness for spotify_assets (docs/architecture.md#performance): ``python -m benchmarks run --help``.

Modules: :mod:`benchmarks.stages` (one function per measured method, the stage registry and
its targets), :mod:`benchmarks.naive` (the original system's naive methods),
:mod:`benchmarks.harness` (data cache, one subprocess per method, JSON and markdown).
"""
