"""Sources publish the set of versions each model aspires to."""
