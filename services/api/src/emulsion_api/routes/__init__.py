"""One router per resource; `emulsion_api.main` includes them all."""
