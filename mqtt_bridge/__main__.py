import sys

from mqtt_bridge.app import main

sys.exit(main())
