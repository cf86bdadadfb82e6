from tests.chaos.harness import main

main()
