"""One build path for every TensorRT generation (8.2 -> 11.x) and TensorRT-RTX.

Generation differences are decided by what the module has (memory pools vs max_workspace_size,
build_serialized_network vs build_engine, BuilderFlag.FP16 or a strongly typed network, ...), so a
new minor release with the same API needs no change. Only EXPLICIT_BATCH is decided by version
(required before 10, deprecated in 10, gone in 11).
"""
import os
import time

from ..errors import BuildFailed, EnvironmentFailure, SpecError
from ..fsutil import write_bytes_atomic
from .layers import load_layers

SEVERITIES = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")
OOM_MARKERS = ("out of memory", "outofmemory", "cudaerrormemoryallocation", "insufficient memory")


def severity_name(severity):
    text = str(severity).split(".")[-1].upper()
    return text if text in SEVERITIES else "INFO"


def make_logger(trt, sink):
    names = {}  # severity -> name: TensorRT logs a thousand lines per build, str(enum) is slow

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines = []

        def log(self, severity, message):
            name = names.get(severity)
            if name is None:
                name = names[severity] = severity_name(severity)
            if name == "VERBOSE":
                return
            line = "[{}] {}".format(name, message)
            self.lines.append((name, message))
            sink(line)

    return Logger()


def major_version(trt):
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 0


def dtype_name(dtype):
    return str(dtype).split(".")[-1].lower()


class EngineBuild(object):
    """Builds one engine from a normalized spec. `strongly_typed`: precision comes from the ONNX."""

    def __init__(self, trt, flavor, spec, log, strongly_typed):
        self.trt, self.flavor, self.spec, self.log = trt, flavor, spec, log
        self.strongly_typed = strongly_typed
        self.options = spec.get("options") or {}
        self.logger = make_logger(trt, log)
        self.warnings = []
        self.flags = []
        self.cleanup = []
        self.plugins = []

    # ---- steps ---------------------------------------------------------------------------------
    def run(self):
        trt = self.trt
        self.load_plugins()
        builder = trt.Builder(self.logger)
        network = builder.create_network(self.network_flags())
        self.parse(network)
        io = self.describe_io(network)
        config = builder.create_builder_config()
        self.set_workspace(config)
        self.set_precision(config, network)
        profile = self.add_profile(builder, config, network)
        self.set_optional_features(config)
        self.set_dla(builder, config)
        self.target(config)
        cache = self.load_timing_cache(config)
        self.add_calibrator(config, profile, io)
        started = time.time()
        try:
            plan = self.build(builder, network, config)
        finally:
            for release in self.cleanup:
                release()
        seconds = time.time() - started
        if cache is not None:
            self.save_timing_cache(config)
        return {"plan": plan, "io": io, "warnings": self.warnings + [m for s, m in self.logger.lines if s == "WARNING"],
                "flags": self.flags, "builder_seconds": seconds, "flavor": self.flavor,
                "version": str(trt.__version__), "plugins": self.plugins}

    def load_plugins(self):
        """Load the job's custom layer libraries (layers.py); sets self.plugins, the manifest's records."""
        self.plugins = load_layers(self.trt, self.spec.get("plugins") or [], self.logger, self.errors)

    def network_flags(self):
        trt = self.trt
        creation = trt.NetworkDefinitionCreationFlag
        if self.flavor == "tensorrt" and major_version(trt) < 10 and hasattr(creation, "EXPLICIT_BATCH"):
            return 1 << int(creation.EXPLICIT_BATCH)
        return 0

    def parse(self, network):
        parser = self.trt.OnnxParser(network, self.logger)
        path = self.spec["onnx"]
        if hasattr(parser, "parse_from_file"):
            ok = parser.parse_from_file(path)
        else:
            with open(path, "rb") as handle:
                ok = parser.parse(handle.read())
        if not ok:
            details = []
            for index in range(parser.num_errors):
                error = parser.get_error(index)
                details.append(str(error.desc() if hasattr(error, "desc") else error))
            first = details[0] if details else "no parser error given"
            raise BuildFailed("the ONNX parser rejected the model: {}".format(first), details + self.errors())
        self.parser = parser  # the network references it until the build is done

    def describe_io(self, network):
        profiles = self.spec.get("inputs") or {}
        inputs, outputs = [], []
        for index in range(network.num_inputs):
            tensor = network.get_input(index)
            entry = {"name": tensor.name, "dtype": dtype_name(tensor.dtype), "shape": list(tensor.shape)}
            if tensor.name in profiles:
                entry["profile"] = profiles[tensor.name]
            inputs.append(entry)
        for index in range(network.num_outputs):
            tensor = network.get_output(index)
            outputs.append({"name": tensor.name, "dtype": dtype_name(tensor.dtype), "shape": list(tensor.shape)})
        unknown = sorted(set(profiles) - set(i["name"] for i in inputs))
        if unknown:
            raise SpecError("profile given for {}, which the network does not have (inputs: {})".format(
                ", ".join(unknown), ", ".join(i["name"] for i in inputs)))
        dynamic = [i["name"] for i in inputs if any(d < 0 for d in i["shape"]) and i["name"] not in profiles]
        if dynamic:
            raise BuildFailed("input {} has dynamic dimensions and no optimization profile".format(", ".join(dynamic)))
        return {"inputs": inputs, "outputs": outputs}

    def set_workspace(self, config):
        size = self.options.get("workspace")
        if not size:
            return
        trt = self.trt
        if hasattr(config, "set_memory_pool_limit") and hasattr(trt, "MemoryPoolType"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(size))
        else:
            config.max_workspace_size = int(size)

    def set_flag(self, config, name, why):
        flag = getattr(self.trt.BuilderFlag, name, None)
        if flag is None:
            raise BuildFailed("{} {} has no BuilderFlag.{} ({})".format(self.flavor, self.trt.__version__, name, why))
        config.set_flag(flag)
        self.flags.append(name)

    def set_precision(self, config, network):
        precision = self.spec["precision"]
        if self.strongly_typed:
            self.check_typed_network(network, precision)
            return
        if precision == "fp32" and hasattr(self.trt.BuilderFlag, "TF32"):
            config.clear_flag(self.trt.BuilderFlag.TF32)
        elif precision == "fp16":
            self.set_flag(config, "FP16", "fp16")
        elif precision == "bf16":
            self.set_flag(config, "BF16", "bf16")
        elif precision == "fp8":
            self.set_flag(config, "FP8", "fp8 needs Q/DQ nodes in the model")
        elif precision == "int8":
            self.set_flag(config, "INT8", "int8")
            if hasattr(self.trt.BuilderFlag, "FP16"):
                self.set_flag(config, "FP16", "fallback for layers without int8 kernels")

    def check_typed_network(self, network, precision):
        """Strongly typed builders take precision from the ONNX: the controller converts it first."""
        wanted = {"fp16": ("half",), "bf16": ("bf16",), "int8": ("int8",), "fp8": ("fp8",)}.get(precision)
        if not wanted:
            return
        seen = set()
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            for out in range(layer.num_outputs):
                seen.add(dtype_name(layer.get_output(out).dtype))
            seen.add(dtype_name(getattr(layer, "precision", "")))
        if not seen.intersection(wanted):
            raise SpecError("{} {} builds strongly typed networks and this ONNX has no {} tensors; convert it "
                            "first (the controller does this for {} jobs)".format(
                                self.flavor, self.trt.__version__, precision, precision))

    def add_profile(self, builder, config, network):
        profiles = self.spec.get("inputs") or {}
        if not profiles:
            return None
        profile = builder.create_optimization_profile()
        for name, shapes in sorted(profiles.items()):
            try:
                profile.set_shape(name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
            except Exception as err:  # TensorRT raises its own exception types here
                raise BuildFailed("TensorRT rejected the profile of input {}: {}".format(name, err), self.errors())
        index = config.add_optimization_profile(profile)
        if index is not None and index < 0:
            raise BuildFailed("TensorRT rejected the optimization profile", self.errors())
        return profile

    def set_optional_features(self, config):
        trt, options = self.trt, self.options
        level = options.get("builder_optimization_level")
        if level is not None:
            if hasattr(config, "builder_optimization_level"):
                config.builder_optimization_level = int(level)
            elif level != 3:
                self.warnings.append("builder_optimization_level {} ignored: {} {} does not have it".format(
                    level, self.flavor, trt.__version__))
        hardware = options.get("hardware_compatibility_level") or "none"
        if hardware != "none":
            enum = getattr(trt, "HardwareCompatibilityLevel", None)
            member = getattr(enum, hardware.upper(), None) if enum is not None else None
            if member is None or not hasattr(config, "hardware_compatibility_level"):
                raise BuildFailed("{} {} has no hardware compatibility level {}".format(
                    self.flavor, trt.__version__, hardware.upper()))
            config.hardware_compatibility_level = member
        if options.get("version_compatible"):
            self.set_flag(config, "VERSION_COMPATIBLE", "version-compatible engines need TensorRT 8.6+")
            if options.get("exclude_lean_runtime"):
                self.set_flag(config, "EXCLUDE_LEAN_RUNTIME", "lean runtime exclusion needs TensorRT 8.6+")
            if self.plugins and hasattr(config, "plugins_to_serialize"):
                config.plugins_to_serialize = [p["path"] for p in self.plugins]
        if options.get("sparse_weights"):
            self.set_flag(config, "SPARSE_WEIGHTS", "sparse weights")

    def set_dla(self, builder, config):
        core = self.options.get("dla_core")
        if core is None:
            return
        trt = self.trt
        available = getattr(builder, "num_DLA_cores", 0)
        if core >= available:
            raise EnvironmentFailure("DLA core {} requested, this host has {} DLA cores".format(core, available))
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(core)
        if self.options.get("gpu_fallback"):
            self.set_flag(config, "GPU_FALLBACK", "GPU fallback")

    def target(self, config):
        """Full TensorRT builds for the GPU it runs on; TensorRT-RTX overrides this (ahead of time)."""

    def load_timing_cache(self, config):
        path = self.spec.get("timing_cache")
        if not path or not self.options.get("timing_cache", True) or not hasattr(config, "create_timing_cache"):
            return None
        data = b""
        if os.path.exists(path):
            with open(path, "rb") as handle:
                data = handle.read()
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, False)
        return cache

    def save_timing_cache(self, config):
        cache = config.get_timing_cache()
        if cache is None:
            return
        directory = os.path.dirname(os.path.abspath(self.spec["timing_cache"]))
        if not os.path.isdir(directory):
            os.makedirs(directory)
        write_bytes_atomic(self.spec["timing_cache"], bytes(cache.serialize()))

    def add_calibrator(self, config, profile, io):
        """Implicit quantization (full TensorRT <= 10.x, int8 without Q/DQ nodes)."""
        if self.spec["precision"] != "int8" or self.strongly_typed or not self.spec.get("calibration"):
            return
        from ..calibrator import load_batches, make_calibrator
        from ..cudart import CudaRuntime

        if not hasattr(self.trt, "IInt8EntropyCalibrator2") or not hasattr(config, "int8_calibrator"):
            raise BuildFailed("{} {} has no INT8 calibrator API: give the model Q/DQ nodes".format(
                self.flavor, self.trt.__version__))
        names = [i["name"] for i in io["inputs"]]
        batches = load_batches(self.spec["calibration"], names)
        calibrator = make_calibrator(self.trt, batches, self.spec.get("calibration_cache"), CudaRuntime())
        config.int8_calibrator = calibrator
        if profile is not None and hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)
        self.cleanup.append(calibrator.release)
        self.calibrator = calibrator

    def build(self, builder, network, config):
        if hasattr(builder, "build_serialized_network"):
            plan = builder.build_serialized_network(network, config)
        else:
            engine = builder.build_engine(network, config)
            plan = engine.serialize() if engine is not None else None
        if plan is None:
            errors = self.errors()
            text = " ".join(errors).lower()
            if any(marker in text for marker in OOM_MARKERS):
                raise EnvironmentFailure("the builder ran out of memory", errors)
            raise BuildFailed("the builder failed: " + (errors[-1] if errors else "no error message"), errors)
        return bytes(plan)

    def errors(self):
        return [message for severity, message in self.logger.lines if severity in ("ERROR", "INTERNAL_ERROR")]
