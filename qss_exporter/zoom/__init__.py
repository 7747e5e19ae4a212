"""Everything that speaks Zoom: event decoding, units, vocabularies and signatures (no I/O)."""
