"""Model registry cache: packaged/hub/local models materialized offline as safetensors."""
