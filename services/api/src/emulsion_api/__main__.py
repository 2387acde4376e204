"""`python -m emulsion_api`: the same as the `emulsion-api` console script."""

from emulsion_api.main import main

main()
