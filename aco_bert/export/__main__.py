import sys

from aco_bert.export.build import main

sys.exit(main())
