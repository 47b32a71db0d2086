"""``python -m aco_bert.stack``: the stacking verb (see :mod:`aco_bert.decision.stage`)."""

import sys

from aco_bert.decision.stage import main

if __name__ == "__main__":
    sys.exit(main())
