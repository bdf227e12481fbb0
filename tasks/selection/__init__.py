"""Selection: k-center, REPRESENTATIVE, strategies, sequences, near duplicates, quality."""
