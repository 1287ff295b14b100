from estafet.cli.main import main

main()
