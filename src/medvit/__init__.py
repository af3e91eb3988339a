"""medvit: medical-imaging pipelines on Kedro."""
