"""Export fine-tuned models where they are used: ONNX graphs (checked with onnxruntime) and
Hugging Face transformers folders; and the reverse, transformers AST folders -> ``ASTModel``.

Importing this package needs only torch; each call imports its optional packages (the
``export`` extra: onnx, onnxruntime, onnxscript, transformers) and says how to install them.
"""
from ssast_fast.export.hf_export import check_transformers, load_transformers_model, to_transformers
from ssast_fast.export.hf_import import read_transformers_folder
from ssast_fast.export.onnx_export import check_onnx, onnx_logits, onnx_session, read_onnx_metadata, to_onnx
from ssast_fast.model.ast_model import ASTModel

#: A transformers AST folder -> fine-tuning ``ASTModel`` (the model builds itself from the folder).
from_transformers = ASTModel.from_transformers

__all__ = ["check_onnx", "check_transformers", "from_transformers", "load_transformers_model", "onnx_logits",
           "onnx_session", "read_onnx_metadata", "read_transformers_folder", "to_onnx", "to_transformers"]
