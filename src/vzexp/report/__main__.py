"""`python -m vzexp.report`: see vzexp.report."""

import sys

from vzexp.report import main

sys.exit(main())
