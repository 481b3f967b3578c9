"""The `ckd` command line. Imports every layer of the kit; nothing imports it."""
