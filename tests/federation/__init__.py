"""Federation: nodes reaching each other over TLS with pinned certificates."""
