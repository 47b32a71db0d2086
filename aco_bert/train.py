"""``python -m aco_bert.train`` / ``accelerate launch -m aco_bert.train``: the training verb (see
:mod:`aco_bert.model.trainer`)."""

import sys

from aco_bert.model.trainer import main

if __name__ == "__main__":
    sys.exit(main())
