"""A finished sweep, read back through the real TensorBoard server's HTTP data API."""

import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from tinyrun import SMALL_MODEL, TINY

SERVER_START_S = 60  # TensorBoard imports slowly on a busy 2-core machine


def get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def server(dropbench, tmp_path):
    """TensorBoard on 127.0.0.1 (a port of the OS's choosing) over a 2-run tiny sweep."""
    done = dropbench("run", "-m", *SMALL_MODEL["mlp"], *TINY, "reg=none,dropout", "p=0.3")
    assert done.returncode == 0, done.stderr
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path / "results")]
    command += ["--host", "127.0.0.1", "--port", "0", "--load_fast=false", "--reload_interval", "0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        address = None
        deadline = time.monotonic() + SERVER_START_S
        while address is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line or process.poll() is None, "tensorboard exited"
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            address = match and match.group(1)
        assert address, "tensorboard did not report its address"
        while len(get(f"{address}/data/runs")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the first load of the event files runs in the background
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_tensorboard_serves_the_sweeps_curves_hparams_and_weight_maps(server, tmp_path):
    runs = get(f"{server}/data/runs")
    assert sorted(Path(r).parts[4] for r in runs) == ["dropout", "none"]  # sweeps/default/mnist/mlp/<reg>
    for run in runs:
        record = json.loads((tmp_path / "results" / run / "metrics.json").read_text())
        query = urllib.parse.urlencode({"run": run, "tag": "val/acc"})
        points = get(f"{server}/data/plugin/scalars/scalars?{query}")
        assert [step for _, step, _ in points] == [1, 2]
        assert [value for _, _, value in points] == pytest.approx(
            [row["val/acc"] for row in record["history"]]
        )

    experiment = get(f"{server}/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {h["name"] for h in experiment["hparamInfos"]}
    assert {"reg", "p", "wd", "model", "dataset", "seed"} <= hparams
    assert {"model.hidden", "dataset.val_size", "optimizer.betas", "reg.input_p"} <= hparams  # setup too
    assert {"test/acc", "val/acc", "test/nll"} <= {m["name"]["tag"] for m in experiment["metricInfos"]}
    request = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 10,
    }
    groups = get(f"{server}/data/plugin/hparams/session_groups", request)["sessionGroups"]
    assert len(groups) == 2  # one session per run: the summary sits in the run's own folder
    for group in groups:
        record = json.loads((tmp_path / "results" / group["name"] / "metrics.json").read_text())
        assert group["hparams"]["reg"] == record["config"]["reg"]
        assert group["hparams"].get("p") == record["config"]["p"]  # absent for reg=none, which ignores p
        test_acc = [m["value"] for m in group["metricValues"] if m["name"]["tag"] == "test/acc"]
        assert test_acc == pytest.approx([record["final"]["test/acc"]])

    images = get(f"{server}/data/plugin/images/tags")
    assert all("weights/first_layer" in images[run] for run in runs)
