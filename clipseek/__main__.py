from clipseek.entry import main

main()
