from rlmodel.cli.entry import run

run()
