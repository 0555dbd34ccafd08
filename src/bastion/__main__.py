from bastion.entrypoints.cli import main

main()
