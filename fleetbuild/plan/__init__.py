"""What can be built where: the planner (planner.py: config -> jobs -> problems and build-key
parts), the compatibility rules, custom layer libraries, TensorRT's ONNX operator tables, and the
accuracy measurement of a job's precision.

Imports models, config and the shared leaves. Rules from plugins are handed in (planner.PlanRules),
so the plan never imports the plugin manager or anything that runs builds.
"""
