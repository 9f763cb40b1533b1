"""The pure core: markings, parties, communities, policy and STIX checks. No I/O, no framework."""
