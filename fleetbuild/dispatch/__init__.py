"""Dispatch: running the worker on build hosts (ansible.py is the only module importing ansible_runner)."""
