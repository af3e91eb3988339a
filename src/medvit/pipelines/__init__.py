"""One folder per Kedro pipeline: pipeline.py wires, nodes.py holds thin functions."""
