from mk0r_tui.cli import main

main()
