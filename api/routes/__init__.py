"""HTTP routes: translate requests into one service call each, and results into responses."""
