from rlmodel.cli import main

main()
