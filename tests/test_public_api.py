"""Every public name imports and is documented; the package docstring example runs."""
from __future__ import annotations

import doctest
import inspect
import importlib

import pytest

MODULES = ["lucent_dgn", "lucent_dgn.objectives", "lucent_dgn.parameterizations", "lucent_dgn.render",
           "lucent_dgn.generators", "lucent_dgn.models", "lucent_dgn.interop", "lucent_dgn.cnnpref", "lucent_dgn.icnn",
           "lucent_dgn.spaces", "lucent_dgn.layers", "lucent_dgn.errors", "lucent_dgn.viz", "lucent_dgn.weights",
           "lucent_dgn.caffemodel", "lucent_dgn.convert", "lucent_dgn.examples", "lucent_dgn.models.vgg",
           "lucent_dgn.sweeps", "lucent_dgn.atlas"]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist_and_have_docstrings(name):
    module = importlib.import_module(name)
    assert module.__doc__ and module.__all__
    for public in module.__all__:
        obj = getattr(module, public)
        if inspect.isfunction(obj) or inspect.isclass(obj):  # not type aliases or constants
            assert (obj.__doc__ or "").strip(), f"{name}.{public} has no docstring"


def test_package_docstring_example():
    import lucent_dgn
    failures, tried = doctest.testmod(lucent_dgn, verbose=False)
    assert tried > 0 and failures == 0
