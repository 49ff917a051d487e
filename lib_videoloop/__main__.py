import sys

from lib_videoloop.cli import main

sys.exit(main())
