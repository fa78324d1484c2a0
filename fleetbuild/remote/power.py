"""A Jetson's power draw from its INA3221 rails, as tegrastats reads them (Python 3.6, standard
library). JetPack 4: iio in_power<N>_input (mW); JetPack 5/6: hwmon in<N>_input (mV) and
curr<N>_input (mA). Paths under FLEETBUILD_PROBE_ROOT (tests give a made-up /sys). None where the
board has no such sensor (a datacenter GPU: nvidia-smi's power is not read here)."""
import glob
import os


def rails(root=None):
    root = root or os.environ.get("FLEETBUILD_PROBE_ROOT") or "/"
    base = os.path.join(root, "sys/bus/i2c/drivers")
    iio = sorted(glob.glob(os.path.join(base, "ina3221*", "*", "iio:device*", "in_power*_input")))
    if iio:
        return [("mW", path) for path in iio]
    found = []
    for volts in sorted(glob.glob(os.path.join(base, "ina3221*", "*", "hwmon", "hwmon*", "in*_input"))):
        amps = os.path.join(os.path.dirname(volts), os.path.basename(volts).replace("in", "curr", 1))
        if os.path.exists(amps):
            found.append(("mV*mA", volts + "|" + amps))
    return found


def watts(sensors):
    """The total draw now, in watts, or None when nothing could be read."""
    total, read = 0.0, False
    for unit, path in sensors:
        try:
            if unit == "mW":
                total += _number(path) / 1000.0
            else:
                volts, amps = path.split("|")
                total += _number(volts) * _number(amps) / 1e6
            read = True
        except (IOError, OSError, ValueError):
            continue
    return total if read else None


def _number(path):
    with open(path) as handle:
        return float(handle.read().strip())
