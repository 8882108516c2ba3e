from rlmodel.console import run

run()
