"""Operator scripts: tie the infra/ stack to the Chalice app (run from the project root with ``python -m``)."""
