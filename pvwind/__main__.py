import sys

from pvwind.cli import main

sys.exit(main())
