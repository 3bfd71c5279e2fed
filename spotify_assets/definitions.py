"""Code location entry point: everything is discovered from the ``defs/`` folder.

Built once at import (not in a ``@dg.definitions`` function) so that step processes forked
from the executor's preloaded forkserver reuse it instead of rebuilding the component tree
(~4 s per step otherwise).
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
