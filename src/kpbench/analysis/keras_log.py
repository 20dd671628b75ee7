"""Keras `fit` console logs (TensorFlow 2.x, `verbose=1`), read as measured data: the original
study's six runs are the only records of real EC2 machines this project has.

What a log holds, in order: the printed data shapes, the cluster's TF_CONFIG (cluster runs), the
model summary (`model.summary()`: a fixed-width table whose long layer names wrap onto the next
line), the study's own "Initialization time" line, one progress line per epoch whose updates are
separated by backspaces and carriage returns, the "Training time" line and, on single machines, the
final `evaluate` line.

What an epoch line's figures cover, from Keras's own code (keras-team/keras at commit 7007cd0,
February 2022, the TF 2.8 release line the study's logs match): `ProgbarLogger` makes a new
`Progbar` in `on_epoch_begin` and finalizes it in `on_epoch_end`, which `fit` calls after the
epoch's validation pass (keras/callbacks.py). At that final update `Progbar.update` prints
`now - self._start`, so the epoch's seconds run from the epoch's start to the end of its validation,
rounded to whole seconds ('%.0fs'); and the per-step figure is `_estimate_step_duration`, which is
(now − the end of step 1) / (steps − 1): the steps after the first plus the validation pass, per
step, rounded to whole milliseconds (keras/utils/generic_utils.py). Neither is the training steps
alone; the first step (graph tracing) is in the seconds but not in the per-step figure.
"""

import gzip
import json
import re
from pathlib import Path

from kpbench import KpbenchError

_SHAPE = re.compile(r"\((\d+(?:, \d+)*)\)")
_SHAPES_LINE = re.compile(r"\s*(?:\(\d+(?:, \d+)*\)\s*)+")  # "(7049, 96, 96, 1)" or two on one line
_EPOCH = re.compile(r"^Epoch (\d+)/(\d+)\s*$")
_FINAL = re.compile(r"^\s*(\d+)/(\d+) \[=+\] - (\d+)s (\d+)(us|ms|s)/step((?: - \w+: [-+.\deE]+(?:nan|inf)?)+)\s*$")
_EVALUATE = re.compile(r"^(\d+)/(\d+) - (\d+)s((?: - \w+: [-+.\deE]+)+) - (\d+)s/epoch - (\d+)(us|ms|s)/step\s*$")
_METRIC = re.compile(r" - (\w+): ([-+.\deE]+|nan|inf)")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


class _Reader:
    """Lines with their numbers, for errors that name the file and line."""

    def __init__(self, text, source):
        self.lines, self.source, self.index = text.split("\n"), source, 0

    def fail(self, message, number=None):
        raise KpbenchError(f"{self.source}: line {number or self.index}: {message}")


def _metrics(text):
    return {name: float(value) for name, value in _METRIC.findall(text)}


def _summary_layers(reader, header_number):
    """The layer rows of a model summary, from the header line's column positions; a name too long
    for its column continues on the next line, whose other columns are blank."""
    header = reader.lines[header_number - 1]
    shape_at, params_at = header.index("Output Shape"), header.index("Param #")
    layers, number = [], header_number + 1
    while number <= len(reader.lines):
        line = reader.lines[number - 1]
        number += 1
        if line.startswith("="):
            if layers:
                return layers, number
            continue
        if not line.strip():
            continue
        name, shape, params = line[:shape_at].strip(), line[shape_at:params_at].strip(), line[params_at:].strip()
        if not shape and not params and layers:
            layers[-1]["name"] += name
            continue
        if not (shape.startswith("(") and params.replace(",", "").isdigit()):
            reader.fail(f"model summary row not understood: {line.strip()!r}", number - 1)
        layers.append({"name": name, "output_shape": [None if d == "None" else int(d) for d in
                                                      shape.strip("()").split(", ")],
                       "parameters": int(params.replace(",", ""))})
    reader.fail("the model summary never ends", header_number)


def _layer_types(layers):
    """'conv2d (Conv2D)' → name conv2d, type Conv2D."""
    for layer in layers:
        match = re.fullmatch(r"(\S+) \((\w+)\)", layer["name"])
        if match:
            layer["name"], layer["type"] = match.groups()
        else:
            layer["type"] = None
    return layers


# Long: one pass over a log's every kind of line, each branch a few lines; apart they would pass the
# reader's state back and forth.
def parse_log(text, source="<log>"):
    """Everything a Keras fit log says, or a KpbenchError naming the file and line at fault."""
    reader = _Reader(text, source)
    found = {"source": str(source), "shapes": [], "tf_config": None, "layers": None, "totals": {},
             "init_s": None, "train_s": None, "epochs": [], "evaluation": None}
    epoch, number = None, 0
    while number < len(reader.lines):
        line = reader.lines[number]
        number += 1
        last = re.split(r"[\r\x08]+", line)[-1]
        if (started := _EPOCH.match(line)) is not None:
            if epoch is not None and "seconds" not in epoch:
                reader.fail(f"epoch {epoch['epoch']} has no final progress line", epoch["line"])
            epoch = {"epoch": int(started.group(1)), "of": int(started.group(2)), "line": number}
            found["epochs"].append(epoch)
        elif (final := _FINAL.match(last)) is not None:
            if epoch is None or "seconds" in epoch:
                reader.fail("an epoch's final progress line outside an epoch", number)
            steps, target = int(final.group(1)), int(final.group(2))
            if steps != target:
                reader.fail(f"epoch {epoch['epoch']} ended at step {steps} of {target}", number)
            epoch.update(steps=steps, seconds=int(final.group(3)),
                         step_s=int(final.group(4)) * _UNIT_S[final.group(5)], **_metrics(final.group(6)))
        elif "[" in line and "/step" not in last and epoch is not None:
            continue  # an epoch's progress updates before its final one
        elif line.startswith('{"cluster"'):
            try:
                found["tf_config"] = json.loads(line)
            except ValueError:
                reader.fail("a TF_CONFIG line that is not JSON", number)
        elif line.startswith(" Layer (type)"):
            found["layers"], number = _summary_layers(reader, number)
            found["layers"] = _layer_types(found["layers"])
            number -= 1
        elif (total := re.match(r"^(Total|Trainable|Non-trainable) params: ([\d,]+)", line)) is not None:
            found["totals"][total.group(1).lower().replace("-", "_")] = int(total.group(2).replace(",", ""))
        elif line.startswith("Initialization time:") or line.startswith("Training time:"):
            key = "init_s" if line.startswith("Init") else "train_s"
            try:
                found[key] = float(line.split(":", 1)[1])
            except ValueError:
                reader.fail(f"{line.split(':')[0]} is not a number of seconds", number)
        elif (evaluation := _EVALUATE.match(last)) is not None:
            found["evaluation"] = {"steps": int(evaluation.group(1)), "seconds": int(evaluation.group(3)),
                                   **_metrics(evaluation.group(4))}
        elif _SHAPES_LINE.fullmatch(line):
            found["shapes"] += [[int(d) for d in shape.split(", ")] for shape in _SHAPE.findall(line)]
    if epoch is not None and "seconds" not in epoch:
        reader.fail(f"epoch {epoch['epoch']} has no final progress line: the log is truncated", epoch["line"])
    for key, what in (("layers", "model summary"), ("init_s", "Initialization time"), ("train_s", "Training time")):
        if found[key] is None:
            reader.fail(f"no {what} line: the log is truncated or not a Keras fit log", len(reader.lines))
    if not found["epochs"]:
        reader.fail("no epoch", len(reader.lines))
    for index, row in enumerate(found["epochs"], 1):
        if row["epoch"] != index:
            reader.fail(f"epoch {row['epoch']} where epoch {index} was due", row["line"])
    return found


def read_log(path):
    """A log file, gzip-compressed or not, parsed."""
    path = Path(path)
    try:
        data = path.read_bytes()
        text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as error:
        raise KpbenchError(f"{path}: cannot be read as a log: {error}") from None
    return parse_log(text, path)
