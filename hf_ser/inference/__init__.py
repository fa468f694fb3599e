"""Loading saved models, `hf-ser predict` and ONNX; never imports training/ or arguments."""
