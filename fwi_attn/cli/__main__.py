import sys

from fwi_attn.cli import main

sys.exit(main())
