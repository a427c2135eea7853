"""Convert a Keras model into the twin a device runs: LiteRT int8 / float16 / dynamic range, or ONNX.

The twin takes the same network input as the Keras model: the model card's crop, resize, colour
order and scale stay outside the network, and the card is copied beside the twin
(``twin.tflite`` -> ``twin.toml``), so ``load_model`` applies the same preprocessing to both and
the two are compared on the same pixels. Conversions (``to``):

``int8``
    Full-integer quantisation: weights and activations int8, calibrated on a representative
    dataset: the card's preprocessing of ``calibration`` frames (a folder of PNG/JPEG) or, by
    default, generated frames (road scenes; sign crops for a classifier), as a campaign's default
    seeds. Input and output stay float32 (the converter quantises at the input and dequantises at
    the output) unless ``int8_io``: then they are int8 and deeptest-iot quantises the card's float
    input with the input tensor's own scale and zero point, as the device's camera pipeline must.
    Ops without an int8 kernel stay float between a DEQUANTIZE and a QUANTIZE (the converter's
    choice, e.g. ELU).
``float16``
    Weights stored as float16 (half the size), computed in float32 on a CPU.
``dynamic``
    Dynamic-range quantisation: int8 weights, activations quantised on the fly; no calibration.
``onnx``
    Keras' own exporter, ``model.export(path, format="onnx")``, which runs tf2onnx on the model's
    traced function (the ``onnx`` extra installs tf2onnx; Keras patches it for NumPy 2).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeptest_iot.errors import ConfigError, InputError, ModelError, UnsupportedError
from deeptest_iot.fileio import atomic_write_bytes, atomic_write_text

TARGETS = ("int8", "float16", "dynamic", "onnx")
DEFAULT_CALIBRATION = 200  # frames; the TFLite guide suggests ~100-500 representative samples
CALIBRATION_SEED = 0


@dataclass
class Conversion:
    """What ``convert`` made."""

    path: Path
    card_path: Path
    to: str
    bytes: int
    float_bytes: int  # size of the float32 weights of the Keras model, for the ratio
    calibration: str | None  # where the representative frames came from (int8)
    calibration_frames: int
    seconds: float
    int8_io: bool = False
    notes: list = field(default_factory=list)

    def describe(self) -> dict:
        return {"path": str(self.path), "card": str(self.card_path), "to": self.to, "bytes": self.bytes,
                "float_bytes": self.float_bytes, "calibration": self.calibration,
                "calibration_frames": self.calibration_frames, "int8_io": self.int8_io,
                "seconds": round(self.seconds, 2), "notes": list(self.notes)}


# -- calibration frames ----------------------------------------------------------------------------
def generated_calibration(card, n: int = DEFAULT_CALIBRATION, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Default representative frames: the task's generated seeds (road scenes, or sign crops for a
    classifier) at the size campaigns render them."""
    from deeptest_iot.engine.campaign import generated_frame_size
    from deeptest_iot.tasks import get_task

    return get_task(card.task).generated_seeds(n, seed, *generated_frame_size(card)).images


def read_calibration_folder(folder, limit: int = DEFAULT_CALIBRATION) -> list[np.ndarray]:
    """Up to ``limit`` readable frames of a folder (recursive), evenly spaced in name order, grouped by size.

    Unreadable files are skipped; a folder with no usable frame is an InputError.
    """
    import cv2

    from deeptest_iot.data.seeds import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"calibration folder {folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    groups: dict = {}
    bad = 0
    for p in files:
        try:
            data = np.fromfile(p, np.uint8)  # not cv2.imread: it fails silently on non-ASCII paths
        except OSError:
            data = np.zeros(0, np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if img is None:
            bad += 1
            continue
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        groups.setdefault(img.shape, []).append(img)
    if not groups:
        what = (f"{bad} image file(s), none readable as PNG or JPEG" if bad
                else "no .png or .jpg images")
        raise InputError(f"calibration folder {folder}: no usable frames ({what}); int8 quantisation needs "
                         "frames like the ones the model will see (or leave out --calibration to use "
                         "generated frames)")
    return [np.stack(v) for v in groups.values()]


def representative_inputs(mut, frames: list[np.ndarray]) -> np.ndarray:
    """The network inputs the card makes of the frames (the same preprocessing as every run).

    A black and a white frame are added: the camera's pixel range 0..255 is known, so the input
    quantisation covers all of it (with the sample cards' scale 1.0, q = pixel - 128 exactly)
    instead of the range the calibration frames happen to reach, which would clip bright pixels.
    """
    h, w = mut.card.input_size
    extremes = np.stack([np.zeros((h, w, 3), np.uint8), np.full((h, w, 3), 255, np.uint8)])
    return np.concatenate([mut.preprocess(f) for f in [extremes, *frames] if len(f)])


# -- conversion ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _captured_output():
    """Silence the converter's prints and C++ logs (fd 1 and 2); yields a function returning them."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log, open(os.devnull, "w") as sink:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        text: list = []
        try:
            with contextlib.redirect_stdout(sink):  # Python-level prints ("Saved artifact at ...")
                yield lambda: "".join(text)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            log.seek(0)
            text.append(log.read().decode("utf-8", "replace"))


def refusal_reason(text: str) -> str:
    """One line from a converter's error: the first MLIR ``error:`` message and the ops it names."""
    reason = ""
    for line in text.splitlines():
        if "error:" in line:
            msg = line.split("error:", 1)[1].strip()
            if msg.startswith("loc("):
                cut = msg.rfind("): ")
                msg = msg[cut + 3:] if cut >= 0 else msg
            if msg and not msg.startswith("failed while converting"):
                reason = msg
                break
    ops = re.search(r"^(?:Custom|Flex) ops: (.+)$", text, re.M)
    if not reason:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        reason = lines[0] if lines else "no reason given"
    if ops and ops.group(1) not in reason:
        reason += f" (ops: {ops.group(1).strip()})"
    return reason[:300]


def _tflite_bytes(kmodel, to: str, rep: np.ndarray | None, int8_io: bool) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(kmodel)
    if to in ("int8", "float16", "dynamic"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if to == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if to == "int8":
        def dataset():
            for i in range(len(rep)):
                yield [rep[i:i + 1]]

        conv.representative_dataset = dataset
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    return conv.convert()


def _convert_bytes(kmodel, to: str, rep, int8_io: bool, input_hwc) -> bytes:
    return _onnx_bytes(kmodel, input_hwc) if to == "onnx" else _tflite_bytes(kmodel, to, rep, int8_io)


def _convert_in_child(mut, to: str, rep, int8_io: bool, input_hwc, trust: bool, tool: str) -> bytes:
    """Run ``_convert_bytes`` in ``python -m deeptest_iot.model.convert JOB``; a crash is a ModelError."""
    import json
    import signal
    import subprocess

    with tempfile.TemporaryDirectory(prefix="deeptest-convert-") as tmp:
        tmp = Path(tmp)
        model_path = mut.path
        if model_path is None or Path(model_path).suffix.lower() not in (".keras", ".h5", ".hdf5"):
            model_path = str(tmp / "model.keras")
            mut.model.save(model_path)
            trust = True  # the caller's own in-memory model, saved a moment ago
        job = {"model": str(model_path), "trust": trust, "to": to, "int8_io": int8_io,
               "input_hwc": list(input_hwc), "rep": None, "out": str(tmp / "twin.bin"),
               "error": str(tmp / "error.txt")}
        if rep is not None:
            job["rep"] = str(tmp / "rep.npy")
            np.save(job["rep"], rep)
        (tmp / "job.json").write_text(json.dumps(job))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-m", "deeptest_iot.model.convert", str(tmp / "job.json")],
                              capture_output=True, env=env)
        if proc.returncode == 0 and Path(job["out"]).is_file():
            return Path(job["out"]).read_bytes()
        if Path(job["error"]).is_file():
            reason = Path(job["error"]).read_text(encoding="utf-8")
            raise ModelError(f"the {tool} refused model {mut.name!r} (--to {to}): {reason}")
        logs = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        if proc.returncode < 0:
            try:
                sig = signal.Signals(-proc.returncode).name
            except ValueError:
                sig = f"signal {-proc.returncode}"
            hint = (" (it does so on ops it cannot quantise to int8, e.g. SELU or softplus; try --to float16 "
                    "or --to dynamic)" if to == "int8" else "")
            raise ModelError(f"the {tool} crashed ({sig}) converting model {mut.name!r} (--to {to}){hint}")
        raise ModelError(f"the {tool} failed on model {mut.name!r} (--to {to}): {refusal_reason(logs)}")


def _child_main(job_path: str) -> int:
    """The child side of ``_convert_in_child``."""
    import json

    job = json.loads(Path(job_path).read_text())
    from deeptest_iot.model.core import load_keras_file

    try:
        kmodel = load_keras_file(Path(job["model"]), bool(job["trust"]), Path(job["model"]).suffix)
        rep = np.load(job["rep"]) if job["rep"] else None
        with _captured_output() as log:
            try:
                data = _convert_bytes(kmodel, job["to"], rep, bool(job["int8_io"]), tuple(job["input_hwc"]))
            except Exception as exc:  # noqa: BLE001 - reported as one line to the parent
                failure = exc
            else:
                failure = None
        if failure is not None:
            Path(job["error"]).write_text(refusal_reason(f"{failure}\n{log()}"), encoding="utf-8")
            return 1
    except Exception as exc:  # noqa: BLE001 - loading failed: the parent says so in one line
        Path(job["error"]).write_text(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}",
                                      encoding="utf-8")
        return 1
    Path(job["out"]).write_bytes(data)
    return 0


def _onnx_bytes(kmodel, input_hwc) -> bytes:
    try:
        import tf2onnx  # noqa: F401 - Keras' ONNX export runs it
    except ImportError:
        raise UnsupportedError("ONNX export needs tf2onnx; install it with pip install 'deeptest-iot[onnx]'") from None
    kmodel(np.zeros((1, *input_hwc), np.float32))  # Keras exports only a model that was called
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        kmodel.export(str(path), format="onnx", verbose=False)
        return path.read_bytes()


def _card_toml(card, header: str) -> str:
    """A model card as TOML (the keys ``ModelCard.from_dict`` reads)."""
    lines = [header]
    for key, value in card.to_dict().items():
        if key == "source" or value is None or (key == "name" and not value):
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def convert(model, to: str, out, *, calibration=None, int8_io: bool = False,
            n_calibration: int = DEFAULT_CALIBRATION, calibration_seed: int = CALIBRATION_SEED,
            card=None, trust: bool = False, isolate: bool = False) -> Conversion:
    """Convert a Keras model (path or loaded ``KerasModelUnderTest``) to ``to`` at ``out``.

    Writes the twin and its model card (``out`` with suffix ``.toml``), both atomically. Raises
    ConfigError for a bad target or suffix, InputError for calibration frames that cannot be used,
    ModelError (one line, the converter's reason) when the converter refuses the model.

    ``isolate`` runs the converter in a child Python process (the CLI does for int8): the LiteRT
    int8 quantiser kills its process with a segmentation fault on some models (full-integer int8
    of a SELU or softplus activation, TF 2.21), which then becomes a ModelError too. It costs the
    child's TensorFlow start (a few seconds).
    """
    from deeptest_iot.model.card import card_path_for
    from deeptest_iot.model.core import KerasModelUnderTest, load_model

    if to not in TARGETS:
        raise ConfigError(f"unknown conversion {to!r}; choose one of {', '.join(TARGETS)}")
    out = Path(out)
    want = ".onnx" if to == "onnx" else ".tflite"
    if out.suffix.lower() != want:
        raise ConfigError(f"--to {to} writes a {want} file; the output {out} has suffix {out.suffix or '(none)'!r}")
    if int8_io and to != "int8":
        raise ConfigError("--int8-io applies to --to int8 only")
    if calibration is not None and to != "int8":
        raise ConfigError("--calibration applies to --to int8 only (float16, dynamic and onnx need no calibration)")
    mut = model if isinstance(model, KerasModelUnderTest) else load_model(model, card, trust=trust)
    if not isinstance(mut, KerasModelUnderTest):
        raise ModelError(f"convert needs a Keras model (.keras or .h5); {mut.name!r} is a {mut.kind} model")
    start = time.perf_counter()
    rep, source, n_frames = None, None, 0
    if to == "int8":
        if calibration is not None:
            frames = read_calibration_folder(calibration, n_calibration)
            source = str(calibration)
        else:
            frames = [generated_calibration(mut.card, n_calibration, calibration_seed)]
            source = f"{mut.task.generated_kind}, seed {calibration_seed}"
        rep = representative_inputs(mut, frames)
        n_frames = len(rep) - 2
    kmodel = mut.model
    h, w = mut.card.input_size
    shape = (h, w, int(kmodel.inputs[0].shape[-1]))
    tool = "ONNX exporter" if to == "onnx" else "LiteRT converter"
    if isolate:
        data = _convert_in_child(mut, to, rep, int8_io, shape, trust, tool)
    else:
        with _captured_output() as log:
            try:
                data = _convert_bytes(kmodel, to, rep, int8_io, shape)
            except (UnsupportedError, ConfigError):
                raise
            except Exception as exc:  # the converters raise ConverterError, ValueError, RuntimeError, ...
                failure = exc
            else:
                failure = None
        if failure is not None:
            reason = refusal_reason(f"{failure}\n{log()}")
            raise ModelError(f"the {tool} refused model {mut.name!r} (--to {to}): {reason}") from None
    atomic_write_bytes(out, data)
    card_out = out.with_suffix(".toml")
    header = (f"# Model card of {out.name}: the {to} twin of {Path(mut.path).name if mut.path else mut.name}, made "
              f"by deeptest-iot convert{' (int8 input/output)' if int8_io else ''}.\n"
              "# The twin takes the same network input as the float model: this card's preprocessing is "
              "applied to both.")
    src_card = card_path_for(mut.path) if mut.path else None
    if src_card is not None and src_card.is_file() and mut.card.source == str(src_card) \
            and src_card.resolve() != card_out.resolve():
        atomic_write_text(card_out, header + "\n" + src_card.read_text(encoding="utf-8"))
    else:
        atomic_write_text(card_out, _card_toml(mut.card, header))
    float_bytes = int(sum(np.prod(w.shape) for w in kmodel.weights) * 4)
    return Conversion(path=out, card_path=card_out, to=to, bytes=len(data), float_bytes=float_bytes,
                      calibration=source, calibration_frames=n_frames, seconds=time.perf_counter() - start,
                      int8_io=int8_io)


if __name__ == "__main__":  # the isolated converter (see ``convert(isolate=True)``)
    sys.exit(_child_main(sys.argv[1]))
