from tests.failover.harness import main

main()
