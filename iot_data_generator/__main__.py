import sys

from iot_data_generator.app import main

sys.exit(main())
