from clipseek.cli import main

main()
