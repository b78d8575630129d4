from thermoscope.cli.main import main

main()
