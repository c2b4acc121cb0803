"""A small cross-encoder built locally for tests, since none can be downloaded here: it reads a
(query, memory) pair the way a real one does (MiniLM's tokenizer, token type ids telling the two apart) and
scores the pair by the cosine of the two sides' summed MiniLM word embeddings. Its quality is that of a bag of
words; it exists to run the re-ranking path through fastembed and onnxruntime for real."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "vocab.txt",
)
WORD_EMBEDDINGS = "m.embeddings.word_embeddings.weight"


def build_cross_encoder(minilm_dir: Path, out_dir: Path) -> Path:
    """Write model.onnx and the tokenizer files into `out_dir`; returns it."""
    minilm = onnx.load(str(minilm_dir / "model.onnx"))
    table = next(numpy_helper.to_array(t) for t in minilm.graph.initializer if t.name == WORD_EMBEDDINGS)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["token_type_ids"], ["second"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["mask", "second"], ["mask_b"]),
        helper.make_node("Sub", ["mask", "mask_b"], ["mask_a"]),
    ]
    for side in ("a", "b"):
        nodes += [
            helper.make_node("Unsqueeze", [f"mask_{side}", "last"], [f"mask_{side}3"]),
            helper.make_node("Mul", ["embedded", f"mask_{side}3"], [f"masked_{side}"]),
            helper.make_node("ReduceSum", [f"masked_{side}", "tokens"], [f"sum_{side}"], keepdims=0),
            helper.make_node("Mul", [f"sum_{side}", f"sum_{side}"], [f"square_{side}"]),
            helper.make_node("ReduceSum", [f"square_{side}", "features"], [f"norm2_{side}"], keepdims=1),
            helper.make_node("Sqrt", [f"norm2_{side}"], [f"norm_{side}"]),
        ]
    nodes += [
        helper.make_node("Mul", ["sum_a", "sum_b"], ["product"]),
        helper.make_node("ReduceSum", ["product", "features"], ["dot"], keepdims=1),
        helper.make_node("Mul", ["norm_a", "norm_b"], ["norms"]),
        helper.make_node("Add", ["norms", "epsilon"], ["denominator"]),
        helper.make_node("Div", ["dot", "denominator"], ["logits"]),
    ]
    ids = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    graph = helper.make_graph(
        nodes,
        "bag_of_embeddings_cross_encoder",
        ids,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(table.astype(np.float32), "table"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "tokens"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "features"),
            numpy_helper.from_array(np.array(1e-6, dtype=np.float32), "epsilon"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_dir / "model.onnx"))
    for name in TOKENIZER_FILES:
        if (minilm_dir / name).is_file():
            shutil.copy(minilm_dir / name, out_dir / name)
    return out_dir
