"""`python -m llmclassify` (and `torchrun -m llmclassify`) runs the CLI."""

import sys

from .cli import main

sys.exit(main())
