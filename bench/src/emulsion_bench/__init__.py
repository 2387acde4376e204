"""`make bench`: Emulsion end to end, side by side with the limits and the baseline."""
