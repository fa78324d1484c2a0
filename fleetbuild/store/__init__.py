"""What is kept and signed: artifact stores (the ArtifactStore protocol in api.py; file:// built
in, s3:// as a plugin), engine blobs by sha256, release indexes and channels (publish.py), minisign
signatures (signing.py), and the local mirror a device's pull reads.

Imports config and the shared leaves only: the build writes to the store, so it sits below the build.
"""
