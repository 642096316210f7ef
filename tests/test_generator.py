"""The PyTorch port against TensorFlow's own outputs, and the graph reader's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GOLDEN_CASES, assert_faithful, asset, goldens

from realtime.errors import ModelError
from realtime.generator import DCTNet, load_graph_weights
from realtime.graphdef import parse_graph, tensor_to_array


@pytest.mark.parametrize(
    "graph,golden", GOLDEN_CASES, ids=[c[1].split("/")[-1] + ":" + c[0].split("/")[-1] for c in GOLDEN_CASES]
)
def test_port_matches_tensorflow(assets, graph, golden):
    model = DCTNet.from_graph(asset(assets, graph))
    for i, (inp, want, want_float) in enumerate(goldens(asset(assets, golden))):
        x = torch.from_numpy(inp)[None]
        with torch.inference_mode():
            assert_faithful(model(x)[0].numpy(), want, f"{golden} input {i}")
            if want_float is not None:
                got = model.forward_float(x)[0].permute(1, 2, 0).numpy()
                assert np.abs(got - want_float).max() < 1e-3


def test_sizes_come_from_the_graph(assets):
    tiny = load_graph_weights(asset(assets, "fixtures/dctnet_tiny.pb"))
    full = load_graph_weights(asset(assets, "models/dctnet/random/cartoon_anime_h.pb"))
    assert (tiny.channel, tiny.num_blocks) == (8, 4)
    assert (full.channel, full.num_blocks) == (32, 4)
    n_params = sum(v.size for v in full.tensors.values())
    assert 1.4e6 < n_params < 1.55e6  # "about 1.47 M parameters"


def test_truncated_graph_is_named(assets, tmp_path):
    data = asset(assets, "fixtures/dctnet_tiny.pb").read_bytes()
    bad = tmp_path / "cartoon_h.pb"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match=r"cartoon_h\.pb.*(corrupt or truncated|no generator|no input_image)"):
        load_graph_weights(bad)


def test_not_a_graph(tmp_path):
    bad = tmp_path / "notes.pb"
    bad.write_text("this is not a protobuf\n" * 20)
    with pytest.raises(ModelError, match=r"notes\.pb"):
        load_graph_weights(bad)
    with pytest.raises(ModelError, match="cannot read"):
        load_graph_weights(tmp_path / "missing.pb")


def test_graph_that_is_not_dctnet(assets, tmp_path):
    """A valid GraphDef whose generator lacks a layer is refused with what was expected."""
    graph = parse_graph(asset(assets, "fixtures/dctnet_tiny.pb").read_bytes())
    keep = [n for n in graph.node if not n.name.startswith("generator/Conv_9/")]
    del graph.node[:]
    graph.node.extend(keep)
    bad = tmp_path / "other.pb"
    bad.write_bytes(graph.SerializeToString())
    with pytest.raises(ModelError, match=r"other\.pb: generator/Conv_9 is missing"):
        load_graph_weights(bad)


def test_a_graph_declaring_a_huge_constant_is_refused_before_allocating(assets, tmp_path):
    """One splatted value over a 108 TiB shape: NumPy's MemoryError was a traceback. A
    constant is refused when it would hold more values than the file has bytes."""
    graph = parse_graph(asset(assets, "fixtures/dctnet_tiny.pb").read_bytes())
    (node,) = [n for n in graph.node if n.name.endswith("generator/Conv_9/biases")]
    t = node.attr["value"].tensor
    t.ClearField("tensor_content")
    t.ClearField("tensor_shape")
    for size in (2**15, 2**15, 2**15):
        t.tensor_shape.dim.add(size=size)
    t.float_val[:] = [0.5]
    bad = tmp_path / "huge.pb"
    bad.write_bytes(graph.SerializeToString())
    with pytest.raises(ModelError, match=r"huge\.pb is corrupt or truncated \(.*35184372088832 values"):
        load_graph_weights(bad)


def test_tensor_decoding_forms():
    """TensorProto values come packed, as typed lists, as one splatted value, or as halves."""
    graph = parse_graph(b"")
    node = graph.node.add(name="c", op="Const")
    t = node.attr["value"].tensor
    t.dtype = 1
    t.tensor_shape.dim.add(size=2)
    t.tensor_shape.dim.add(size=3)
    t.float_val.append(2.5)
    assert np.array_equal(tensor_to_array(t), np.full((2, 3), 2.5, np.float32))
    t.ClearField("float_val")
    t.tensor_content = np.arange(6, dtype="<f4").tobytes()
    assert np.array_equal(tensor_to_array(t), np.arange(6, dtype=np.float32).reshape(2, 3))
    h = graph.node.add(name="h", op="Const").attr["value"].tensor
    h.dtype = 19
    h.tensor_shape.dim.add(size=2)
    h.half_val.extend(np.array([1.5, -2.0], np.float16).view(np.uint16).astype(int).tolist())
    assert tensor_to_array(h).tolist() == [1.5, -2.0]
