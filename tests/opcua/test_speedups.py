"""edge/sources/opcua/speedups.py gives asyncua's decoder the very same VariantType members."""

from __future__ import annotations

from asyncua import ua
from asyncua.ua import ua_binary

from edge.sources.opcua import speedups


def test_same_answer_as_asyncua_for_every_input_kind():
    original = speedups._original
    for n in range(0, 64):  # 0..25 built in, 26..63 custom ids a Variant byte can carry
        assert speedups.datatype_to_varianttype(n) == original(n)
        assert type(speedups.datatype_to_varianttype(n)) is type(original(n))
    node = ua.NodeId(11)  # a NodeId goes to asyncua's own function
    assert speedups.datatype_to_varianttype(node) is original(node)


def test_the_decoder_calls_through_the_hook_and_round_trips():
    speedups.install()
    assert ua.datatype_to_varianttype is speedups.datatype_to_varianttype
    calls = []

    def spy(t):
        calls.append(t)
        return speedups.datatype_to_varianttype(t)

    ua.datatype_to_varianttype = spy
    try:
        for v in (ua.Variant(1.5, ua.VariantType.Double), ua.Variant([1, 2], ua.VariantType.Int32),
                  ua.Variant("x", ua.VariantType.String), ua.Variant(True, ua.VariantType.Boolean)):
            back = ua_binary.variant_from_binary(ua.utils.Buffer(ua_binary.variant_to_binary(v)))
            assert back == v and back.VariantType is v.VariantType
    finally:
        speedups.install()
    assert len(calls) == 4  # asyncua 2.1.0 looks the type up through ua.datatype_to_varianttype
