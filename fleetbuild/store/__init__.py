"""Artifact stores: where engines and their manifests live (file:// built in, s3:// as a plugin)."""
