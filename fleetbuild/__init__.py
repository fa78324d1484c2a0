"""fleetbuild: build TensorRT engines for a fleet of GPU targets."""

__version__ = "0.1.0"
