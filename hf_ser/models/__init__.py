"""Model files that travel with every checkpoint (configuration_*/modeling_* pairs): they import only torch,
transformers and each other (relative imports), never the rest of hf_ser."""
