import sys

from local.stack import main

sys.exit(main())
