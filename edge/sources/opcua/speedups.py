"""One hot spot of asyncua 2.1.0's decoder, replaced by an equivalent table lookup.

Every Variant asyncua decodes maps its type byte to a ``VariantType`` with
``ua.datatype_to_varianttype``, which calls the Enum class (``VariantType(n)``). When
asyncua decoded every data-change notification, that call was a quarter of the
collector's CPU (py-spy, ops/bench_opcua.py); fastpublish.py now reads the common values
itself, and this still speeds up the rest (arrays, structures, HistoryRead values). A dict
of the 26 built-in types gives the very same members; anything else (custom types,
NodeIds, bools) still goes to asyncua's own function. asyncua is pinned (pyproject.toml); tests/opcua/test_speedups.py checks
equivalence for every input kind and that the decoder still calls through the hook.
"""

from __future__ import annotations

from typing import Any

from asyncua import ua

_original = ua.datatype_to_varianttype
_BUILTIN = {int(v): v for v in ua.VariantType}


def datatype_to_varianttype(int_type: Any) -> Any:
    if type(int_type) is int:
        vt = _BUILTIN.get(int_type)
        if vt is not None:
            return vt
    return _original(int_type)


def install() -> None:
    """Idempotent; affects this process's asyncua (the collector is its only user here)."""
    ua.datatype_to_varianttype = datatype_to_varianttype
