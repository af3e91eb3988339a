"""Reading cohorts into the slice table and the memory-mappable pixel store; no Kedro."""
