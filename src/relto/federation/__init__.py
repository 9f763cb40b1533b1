"""Federation: nodes of the coalition exchanging intelligence with each other."""
