"""Shipped weights: the Fashion-MNIST classifier, judge and generator (see fashion_assets.json)."""
