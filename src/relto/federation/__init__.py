"""Federation between relto nodes: following peers (sync, peers) and the transport they speak over (tls)."""
