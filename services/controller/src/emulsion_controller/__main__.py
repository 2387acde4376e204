from emulsion_controller.operator import main

main()
