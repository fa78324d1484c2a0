"""What an ONNX model is and becomes: inspection (onnxinfo.py), symbolic dims, the ONNX Runtime
shape check, and precision conversion for strongly typed builders.

Imports config and the shared leaves (errors, filehash, remote); never the plan or anything after it.
"""
