from clipseek.cli.entry import main

main()
