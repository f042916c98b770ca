import sys

from fashion_classifier.cli import main

sys.exit(main())
