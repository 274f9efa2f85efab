"""Student kinds, one package each; `registry.py` lists them and looks them up."""
