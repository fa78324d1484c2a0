"""Dispatch: running the worker on build hosts. ansible.py is the only module importing
ansible_runner; every other command rides each host's persistent SSH master (transport.py)."""
