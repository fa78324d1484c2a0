"""Host facts for planning and scheduling: `fleetbuild-remote probe` prints them as JSON.

Facts: CPU arch, OS, Python, GPUs (nvidia-smi; compute capability mapped from the name where old
drivers lack compute_cap; the board on Jetson), Jetson identity (L4T -> JetPack, board), TensorRT
installs (bindings, else package metadata, else NvInferVersion.h), CUDA, DLA cores, trtexec.
Unknown facts are null with a reason in `unknown`; the probe never raises.

File system paths are read under FLEETBUILD_PROBE_ROOT (default "/") and FLEETBUILD_PROBE_ARCH
replaces the CPU arch, so test hosts can stand in for a Jetson; programs (nvidia-smi, nvcc,
trtexec) are looked up on PATH.
"""
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

from . import PROTOCOL_VERSION

# Compute capability by GPU name, for drivers whose nvidia-smi has no compute_cap field (< 510).
CC_BY_NAME = (
    ("H200", "9.0"), ("H100", "9.0"), ("GH200", "9.0"), ("L40", "8.9"), ("L4", "8.9"), ("RTX 40", "8.9"),
    ("RTX 6000 Ada", "8.9"), ("A100", "8.0"), ("A30", "8.0"), ("A800", "8.0"), ("A10", "8.6"),
    ("A40", "8.6"), ("A16", "8.6"), ("A2", "8.6"), ("RTX 30", "8.6"), ("RTX A", "8.6"), ("T4", "7.5"),
    ("RTX 20", "7.5"), ("Quadro RTX", "7.5"), ("TITAN RTX", "7.5"), ("V100", "7.0"), ("TITAN V", "7.0"),
    ("P100", "6.0"), ("P40", "6.1"), ("P4", "6.1"), ("GTX 10", "6.1"),
)
# Jetson boards (from /proc/device-tree/model) -> GPU name and compute capability. Order matters:
# "Orin Nano" must match Orin before Nano.
JETSON_BOARDS = (("Orin", "Orin (nvgpu)", "8.7"), ("Xavier", "Xavier (nvgpu)", "7.2"),
                 ("TX2", "TX2 (nvgpu)", "6.2"), ("Nano", "NVIDIA Tegra X1", "5.3"),
                 ("TX1", "NVIDIA Tegra X1", "5.3"))
# L4T release prefix -> JetPack (longest prefix wins). A unit test keeps it in line with targets/*.toml.
JETPACK_BY_L4T = (("32.7", "4.6"), ("35.2", "5.1"), ("35.3", "5.1.1"), ("35.4", "5.1.2"),
                  ("35.5", "5.1.3"), ("35.6", "5.1.4"), ("35", "5.1"), ("36.3", "6.0"), ("36.4.3", "6.2"),
                  ("36.4", "6.1"))
NVIDIA_SMI_FIELDS = "name,compute_cap,memory.total,driver_version"
TIMEOUT = 60


class Probe(object):
    def __init__(self, root=None, env=None):
        self.env = dict(os.environ if env is None else env)
        self.root = root or self.env.get("FLEETBUILD_PROBE_ROOT") or "/"
        self.unknown = {}

    def arch(self):
        return self.env.get("FLEETBUILD_PROBE_ARCH") or os.uname()[4]

    def path(self, absolute):
        return os.path.join(self.root, absolute.lstrip("/"))

    def read(self, absolute):
        try:
            with open(self.path(absolute), "rb") as handle:
                return handle.read().decode("utf-8", "replace")
        except (IOError, OSError):
            return None

    def which(self, program):
        return shutil.which(program, path=self.env.get("PATH", os.defpath))

    def run(self, argv, timeout=TIMEOUT):
        """(returncode, stdout, stderr) or None when the program cannot be started or hangs."""
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        except (OSError, ValueError):
            return None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def fact(self, name, gather):
        try:
            value = gather()
        except Exception as err:  # a strange host must not crash the probe
            value = None
            self.unknown.setdefault(name, "probe error: {}: {}".format(type(err).__name__, err))
        return value

    # ---- facts ---------------------------------------------------------------------------------
    def os_release(self):
        text = self.read("/etc/os-release")
        if text is None:
            self.unknown["os"] = "no /etc/os-release"
            return None
        values = {}
        for line in text.splitlines():
            if "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip().strip('"')
        return {"id": values.get("ID"), "version": values.get("VERSION_ID"), "pretty": values.get("PRETTY_NAME")}

    def jetson(self):
        text = self.read("/etc/nv_tegra_release")
        if text is None:
            return None
        match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
        l4t = None
        if match:
            l4t = "{}.{}".format(match.group(1), match.group(2))
            if l4t.count(".") == 1:
                l4t += ".0"
        else:
            self.unknown["jetson.l4t"] = "unreadable /etc/nv_tegra_release"
        board = self.read("/proc/device-tree/model")
        board = board.strip("\x00\n ") if board else None
        if board is None:
            self.unknown["jetson.board"] = "no /proc/device-tree/model"
        jetpack = jetpack_for_l4t(l4t) if l4t else None
        if l4t and jetpack is None:
            self.unknown["jetson.jetpack"] = "L4T {} is not in fleetbuild's JetPack table".format(l4t)
        return {"l4t": l4t, "jetpack": jetpack, "board": board}

    def gpus(self, jetson):
        smi = self.which("nvidia-smi")
        gpus = []
        if smi:
            gpus = self.nvidia_smi(smi)
        if not gpus and jetson and jetson.get("board"):
            for key, name, cc in JETSON_BOARDS:
                if key in jetson["board"]:
                    return [{"name": name, "compute_capability": cc, "memory_mib": None, "driver": None,
                             "cc_source": "board"}]
            self.unknown["gpus"] = "unknown Jetson board {!r}".format(jetson["board"])
        if not gpus and "gpus" not in self.unknown:
            self.unknown["gpus"] = "nvidia-smi not found on PATH" if not smi else self.unknown.get(
                "nvidia-smi", "nvidia-smi lists no GPU")
        return gpus

    def nvidia_smi(self, smi):
        result = self.run([smi, "--query-gpu=" + NVIDIA_SMI_FIELDS, "--format=csv,noheader,nounits"])
        fields = NVIDIA_SMI_FIELDS.split(",")
        if result and result[0] != 0 and "compute_cap" in (result[1] + result[2]):
            fields = [f for f in fields if f != "compute_cap"]  # driver < 510
            result = self.run([smi, "--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits"])
        if result is None:
            self.unknown["nvidia-smi"] = "nvidia-smi did not run or timed out"
            return []
        code, out, err = result
        if code != 0:
            self.unknown["nvidia-smi"] = "nvidia-smi exited {}: {}".format(code, (err or out).strip()[:200])
            return []
        gpus = []
        for line in out.splitlines():
            values = [v.strip() for v in line.split(",")]
            if len(values) != len(fields):
                continue
            row = dict(zip(fields, values))
            cc, source = row.get("compute_cap"), "nvidia-smi"
            if not cc or not re.match(r"^\d+\.\d+$", cc):
                cc, source = cc_from_name(row["name"]), "name"
            memory = row.get("memory.total")
            gpus.append({"name": row["name"], "compute_capability": cc,
                         "memory_mib": int(float(memory)) if memory and re.match(r"^[\d.]+$", memory) else None,
                         "driver": row.get("driver_version"), "cc_source": source if cc else None})
        return gpus

    def tensorrt(self):
        installs = []
        for flavor, module in (("tensorrt", "tensorrt"), ("tensorrt-rtx", "tensorrt_rtx")):
            found = self.bindings(module)
            if found:
                installs.append({"flavor": flavor, "version": found, "source": "bindings", "bindings": True})
                continue
            meta = self.metadata(flavor)
            if meta:
                installs.append({"flavor": flavor, "version": meta, "source": "metadata", "bindings": False})
        if not any(i["flavor"] == "tensorrt" for i in installs):
            header = self.header_version()
            if header:
                installs.append({"flavor": "tensorrt", "version": header, "source": "NvInferVersion.h",
                                 "bindings": False})
        if not installs:
            self.unknown["tensorrt"] = ("no tensorrt or tensorrt_rtx module for {}, no package metadata, "
                                        "no NvInferVersion.h".format(sys.executable))
        return installs

    def bindings(self, module):
        """The module's version, imported in a child Python (an import may crash or hang); no child
        when this Python cannot find the module at all."""
        if not _findable(module):
            return None
        code = "import {0}; print({0}.__version__)".format(module)
        result = self.run([sys.executable, "-c", code])
        if result and result[0] == 0 and result[1].strip():
            return result[1].strip().splitlines()[-1]
        return None

    def metadata(self, flavor):
        pattern = re.compile(r"^tensorrt(?:[-_]cu\d+)?-([\d.]+)\.(?:dist|egg)-info$" if flavor == "tensorrt"
                             else r"^tensorrt_rtx(?:[-_]cu\d+)?-([\d.]+)\.(?:dist|egg)-info$")
        for directory in sys.path:
            if not directory or not os.path.isdir(directory):
                continue
            for name in os.listdir(directory):
                match = pattern.match(name)
                if match:
                    return match.group(1)
        return None

    def header_version(self):
        for pattern in ("/usr/include/*-linux-gnu/NvInferVersion.h", "/usr/include/NvInferVersion.h",
                        "/usr/local/tensorrt/include/NvInferVersion.h", "/opt/tensorrt/include/NvInferVersion.h"):
            for path in sorted(glob.glob(self.path(pattern))):
                version = parse_nvinfer_version(open(path).read())
                if version:
                    return version
        return None

    def cuda(self):
        text = self.read("/usr/local/cuda/version.json")
        if text:
            try:
                return json.loads(text)["cuda"]["version"]
            except (ValueError, KeyError, TypeError):
                pass
        text = self.read("/usr/local/cuda/version.txt")
        match = re.search(r"CUDA Version\s+([\d.]+)", text or "")
        if match:
            return match.group(1)
        nvcc = self.which("nvcc") or (self.path("/usr/local/cuda/bin/nvcc")
                                      if os.path.exists(self.path("/usr/local/cuda/bin/nvcc")) else None)
        if nvcc:
            result = self.run([nvcc, "--version"])
            match = re.search(r"release [\d.]+, V([\d.]+)", result[1] if result else "")
            if match:
                return match.group(1)
        self.unknown["cuda"] = "no /usr/local/cuda/version.json or version.txt, no nvcc"
        return None

    def dla_cores(self, jetson):
        if not jetson:
            return 0
        devices = self.path("/sys/bus/platform/devices")
        if not os.path.isdir(devices):
            self.unknown["dla_cores"] = "no /sys/bus/platform/devices"
            return None
        return len([d for d in os.listdir(devices) if re.search(r"nvdla\d*$", d)])

    def trtexec(self):
        found = self.which("trtexec")
        if found:
            return found
        for candidate in ("/usr/src/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec"):
            if os.access(self.path(candidate), os.X_OK):
                return candidate
        self.unknown["trtexec"] = "not on PATH, not in /usr/src/tensorrt/bin"
        return None

    def collect_light(self):
        """The facts a manifest records about its builder, without the slow TensorRT detection."""
        self._jetson = self.fact("jetson", self.jetson)
        return {"host": self.fact("host", lambda: os.uname()[1]), "arch": self.fact("arch", self.arch),
                "os": self.fact("os", self.os_release),
                "python": {"version": sys.version.split()[0], "executable": sys.executable},
                "jetson": self._jetson, "gpus": self.fact("gpus", lambda: self.gpus(self._jetson)) or [],
                "cuda": self.fact("cuda", self.cuda), "unknown": self.unknown}

    def collect(self):
        facts = self.collect_light()
        facts.update(protocol=PROTOCOL_VERSION, tensorrt=self.fact("tensorrt", self.tensorrt) or [],
                     dla_cores=self.fact("dla_cores", lambda: self.dla_cores(self._jetson)),
                     trtexec=self.fact("trtexec", self.trtexec))
        return facts


def _findable(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return True       # cannot tell: let the child Python try


def cc_from_name(name):
    for key, cc in CC_BY_NAME:
        if key in name:
            return cc
    return None


def jetpack_for_l4t(l4t):
    best = None
    for prefix, jetpack in JETPACK_BY_L4T:
        if l4t == prefix or l4t.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, jetpack)
    return best[1] if best else None


def parse_nvinfer_version(text):
    """'8.2.1.8' from NvInferVersion.h (NV_TENSORRT_MAJOR..BUILD, possibly defined via other macros)."""
    defines = dict(re.findall(r"^\s*#define\s+(\w+)\s+(\w+)", text, re.MULTILINE))

    def value(name):
        seen = 0
        current = defines.get(name)
        while current is not None and not current.isdigit() and seen < 5:
            current, seen = defines.get(current), seen + 1
        return current if current is not None and current.isdigit() else None

    parts = [value("NV_TENSORRT_" + p) for p in ("MAJOR", "MINOR", "PATCH", "BUILD")]
    if parts[0] is None or parts[1] is None:
        return None
    return ".".join(p for p in parts if p is not None)


def main(argv=None):
    sys.stdout.write(json.dumps(Probe().collect(), indent=1, sort_keys=True) + "\n")
    return 0
