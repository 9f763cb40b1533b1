"""The TAXII 2.1 protocol as pure functions: media types, filters, cursors, envelopes and statuses."""
