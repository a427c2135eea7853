from deeptest_iot.cli import main

main()
