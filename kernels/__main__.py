import sys

from .aot import main

sys.exit(main(sys.argv[1:]))
