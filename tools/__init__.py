"""Tooling above the product: benchmarks, seeds, the ship-from-store scenario, the demo, and
the development MQTT brokers they start. Installed as `storelens.tools`.

The layering is one way: tools import edge, cloud, models and the contract; none of those
ever imports tools (`tests/test_layering.py` enforces it).
"""
