#!/usr/bin/env bash
# Regenerates the committed protobuf modules. grpcio-tools 1.81 writes code that
# imports under the pinned protobuf 6.33 runtime (newer generators need 7.x).
# tests/test_schema.py fails if the committed files drift from the .proto sources.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.}
python -m grpc_tools.protoc -Iproto --python_out="$out/edge/pb" proto/reading.proto
# Sparkplug B payloads, decoded by the MQTT collector (edge/sources/mqtt/sparkplug.py).
python -m grpc_tools.protoc -Iproto --python_out="$out/edge/pb" proto/sparkplug_b.proto
if [ -f simulators/zerobus/wire.proto ]; then
  python -m grpc_tools.protoc -Isimulators/zerobus --python_out="$out/simulators/zerobus" \
    --grpc_python_out="$out/simulators/zerobus" simulators/zerobus/wire.proto
  # grpc_tools writes an absolute import; make it package-relative.
  sed -i 's/^import wire_pb2 as wire__pb2/from . import wire_pb2 as wire__pb2/' "$out/simulators/zerobus/wire_pb2_grpc.py"
fi
