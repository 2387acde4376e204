from emulsion_janitor.service import main

main()
