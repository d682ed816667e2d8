"""A plugin whose import calls sys.exit: it must fail alone."""

import sys

sys.exit("this plugin gives up")
