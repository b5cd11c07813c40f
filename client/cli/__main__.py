"""`python -m brook.client.cli ...`: the client commands without the server ones."""

import sys

from brook.client.cli.main import main

sys.exit(main())
