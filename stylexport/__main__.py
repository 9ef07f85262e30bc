from stylexport.cli import main

main()
