import sys

from aco_bert.score.scorer import main

sys.exit(main())
