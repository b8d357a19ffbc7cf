"""The operator's command line for the cutover pipeline, on AWS and in the rehearsal sandbox."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The approval gate and the request model are the pipeline's own code, imported as the functions do.
if str(ROOT / "functions") not in sys.path:
    sys.path.insert(0, str(ROOT / "functions"))
