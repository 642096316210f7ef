"""Read TensorFlow frozen graphs (GraphDef) with the protobuf runtime, without TensorFlow.

The message types are declared here as descriptors (field numbers from TensorFlow's
``graph.proto`` / ``node_def.proto`` / ``attr_value.proto`` / ``tensor.proto``), so protobuf
itself does the parsing; fields we do not declare are kept as unknown fields and ignored.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

_F = descriptor_pb2.FieldDescriptorProto

# TensorFlow DataType enum values we can turn into numpy arrays.
_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    19: np.float16,
}
# TensorProto's typed repeated fields, by dtype (half_val stores float16 bit patterns as int32).
_VAL_FIELDS = {
    1: "float_val",
    2: "double_val",
    3: "int_val",
    4: "int_val",
    6: "int_val",
    9: "int64_val",
    10: "bool_val",
    19: "half_val",
}


def _field(msg, name, number, ftype, label=_F.LABEL_OPTIONAL, type_name=None):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name


@cache
def _classes():
    fd = descriptor_pb2.FileDescriptorProto(name="cartoon_cam_graphdef.proto", package="cc", syntax="proto3")
    rep, msg_t, enum_t = _F.LABEL_REPEATED, _F.TYPE_MESSAGE, _F.TYPE_ENUM

    dt = fd.enum_type.add(name="DataType")
    for name, num in [("DT_INVALID", 0)] + [(f"DT_{n}", n) for n in range(1, 31)]:
        dt.value.add(name=name if num == 0 else f"DT_{num}", number=num)

    shape = fd.message_type.add(name="TensorShapeProto")
    dim = shape.nested_type.add(name="Dim")
    _field(dim, "size", 1, _F.TYPE_INT64)
    _field(dim, "name", 2, _F.TYPE_STRING)
    _field(shape, "dim", 2, msg_t, rep, ".cc.TensorShapeProto.Dim")
    _field(shape, "unknown_rank", 3, _F.TYPE_BOOL)

    tensor = fd.message_type.add(name="TensorProto")
    _field(tensor, "dtype", 1, enum_t, type_name=".cc.DataType")
    _field(tensor, "tensor_shape", 2, msg_t, type_name=".cc.TensorShapeProto")
    _field(tensor, "tensor_content", 4, _F.TYPE_BYTES)
    _field(tensor, "float_val", 5, _F.TYPE_FLOAT, rep)
    _field(tensor, "double_val", 6, _F.TYPE_DOUBLE, rep)
    _field(tensor, "int_val", 7, _F.TYPE_INT32, rep)
    _field(tensor, "int64_val", 10, _F.TYPE_INT64, rep)
    _field(tensor, "bool_val", 11, _F.TYPE_BOOL, rep)
    _field(tensor, "half_val", 13, _F.TYPE_INT32, rep)

    attr = fd.message_type.add(name="AttrValue")
    lst = attr.nested_type.add(name="ListValue")
    _field(lst, "s", 2, _F.TYPE_BYTES, rep)
    _field(lst, "i", 3, _F.TYPE_INT64, rep)
    _field(lst, "f", 4, _F.TYPE_FLOAT, rep)
    _field(attr, "list", 1, msg_t, type_name=".cc.AttrValue.ListValue")
    _field(attr, "s", 2, _F.TYPE_BYTES)
    _field(attr, "i", 3, _F.TYPE_INT64)
    _field(attr, "f", 4, _F.TYPE_FLOAT)
    _field(attr, "b", 5, _F.TYPE_BOOL)
    _field(attr, "type", 6, enum_t, type_name=".cc.DataType")
    _field(attr, "shape", 7, msg_t, type_name=".cc.TensorShapeProto")
    _field(attr, "tensor", 8, msg_t, type_name=".cc.TensorProto")

    node = fd.message_type.add(name="NodeDef")
    entry = node.nested_type.add(name="AttrEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, msg_t, type_name=".cc.AttrValue")
    _field(node, "name", 1, _F.TYPE_STRING)
    _field(node, "op", 2, _F.TYPE_STRING)
    _field(node, "input", 3, _F.TYPE_STRING, rep)
    _field(node, "device", 4, _F.TYPE_STRING)
    _field(node, "attr", 5, msg_t, rep, ".cc.NodeDef.AttrEntry")

    graph = fd.message_type.add(name="GraphDef")
    _field(graph, "node", 1, msg_t, rep, ".cc.NodeDef")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("cc.GraphDef"))


def parse_graph(data: bytes):
    """Parse serialized GraphDef bytes; raises ``ValueError`` for bytes that are not one."""
    graph = _classes()()
    try:
        graph.ParseFromString(data)
    except DecodeError as e:
        raise ValueError(f"not a TensorFlow GraphDef ({e})") from None
    return graph


def tensor_to_array(t, max_values: int | None = None) -> np.ndarray:
    """Decode a TensorProto (packed ``tensor_content`` or typed repeated values).
    ``max_values``: the most a tensor may declare (a single value splatted over a shape
    allocates it all: a hostile file can declare terabytes in a few bytes)."""
    if t.dtype not in _DTYPES:
        raise ValueError(f"unsupported tensor dtype {t.dtype}")
    dtype = np.dtype(_DTYPES[t.dtype])
    shape = tuple(d.size for d in t.tensor_shape.dim)
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if count < 0 or (max_values is not None and count > max_values):
        raise ValueError(f"a constant of shape {shape} declares {count} values, more than the file could hold")
    if t.tensor_content:
        arr = np.frombuffer(t.tensor_content, dtype=dtype.newbyteorder("<"))
        if arr.size != count:
            raise ValueError(f"tensor holds {arr.size} values, its shape {shape} needs {count}")
        return arr.astype(dtype).reshape(shape)
    vals = getattr(t, _VAL_FIELDS[t.dtype])
    if t.dtype == 19:
        vals = np.asarray(vals, np.uint16).view(np.float16)
    arr = np.asarray(vals, dtype=dtype)
    if arr.size == count:
        return arr.reshape(shape)
    if arr.size == 1 or arr.size == 0:  # TF splats a single value over the whole shape
        return np.full(shape, arr[0] if arr.size else 0, dtype=dtype)
    raise ValueError(f"tensor holds {arr.size} values, its shape {shape} needs {count}")
