import sys

from lmmvae.cli import main

sys.exit(main())
