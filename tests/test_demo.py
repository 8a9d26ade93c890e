"""The demo's server: its numbers are lintorch's, recomputed here independently in float64, and
every request it cannot answer gets a 400 with a one-line reason, never a 500 or a dropped
connection."""

from __future__ import annotations

import http.client
import json
import random
import signal
import socket
import subprocess
import sys
import threading

import pytest
import torch

import lintorch
from lintorch import demo

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def port():
    server = demo.make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def post(port: int, path: str, body) -> tuple[int, dict]:
    """POST ``body`` (JSON-encoded unless bytes); the status and the decoded answer."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, data, {"Content-Type": "application/json"})
    res = conn.getresponse()
    status, answer = res.status, json.loads(res.read())
    conn.close()
    return status, answer


def raw(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (http.client would fix the headers); the status and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def problem(model: str = "linear", loss: str = "svm", classes: int = 3, seed: int = 0,
            name: str = "overlapping", reg: float = 0.01) -> dict:
    data = demo.preset({"name": name, "seed": seed, "classes": classes})
    params = demo.randomize({"model": model, "classes": classes, "seed": seed, "hidden": 5,
                             **({"std": 0.5} if model == "linear" else {})})["params"]
    return {"model": model, "loss": loss, "reg": reg, "params": params, **data}


def reference(body: dict):
    """lintorch's model with the request's parameters, the points, and the objective."""
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in body["params"].items()}
    C = len(p["b"] if "b" in p else p["b2"])
    if body["model"] == "linear":
        model = lintorch.LinearClassifier(2, C).double()
        pairs, weights = [(model.weight, p["W"]), (model.bias, p["b"])], [model.weight]
    else:
        model = lintorch.SigmoidMLP(2, [len(p["b1"])], C).double()
        layer = model.hidden[0]
        pairs = [(layer.weight, p["W1"]), (layer.bias, p["b1"]), (model.out.weight, p["W2"]),
                 (model.out.bias, p["b2"])]
        weights = model.weights
    with torch.no_grad():
        for param, value in pairs:
            param.copy_(value)
    x = torch.tensor(body["points"], dtype=torch.float64)
    y = torch.tensor(body["labels"])
    loss_fn = lintorch.svm_loss if body["loss"] == "svm" else lintorch.cross_entropy

    def objective():
        data = loss_fn(model(x), y)
        return data + body["reg"] * sum(lintorch.l2_penalty(w) for w in weights), data
    return model, [param for param, _ in pairs], x, y, loss_fn, objective


def close(got, expected: torch.Tensor, atol: float = 1e-12) -> None:
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), expected, rtol=0,
                               atol=atol)


CASES = [("linear", "svm"), ("linear", "softmax"), ("mlp", "svm"), ("mlp", "softmax")]


@pytest.mark.parametrize("model,loss", CASES)
def test_steps_are_lintorchs_sgd_steps(port, model, loss):
    body = problem(model, loss)
    status, answer = post(port, "/api/step", {**body, "lr": 0.3, "steps": 3})
    assert status == 200, answer
    net, params, x, y, loss_fn, objective = reference(body)
    optimizer = torch.optim.SGD(params, lr=0.3)
    before = []
    for _ in range(3):
        total, _ = objective()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        before.append(total.item())
    close(answer["losses"], torch.tensor(before, dtype=torch.float64))
    names = ["W", "b"] if model == "linear" else ["W1", "b1", "W2", "b2"]
    for name, param in zip(names, params):
        close(answer["params"][name], param.detach())
    assert answer["loss"] == pytest.approx(objective()[0].item(), rel=0, abs=1e-12)


@pytest.mark.parametrize("model,loss", CASES)
def test_evaluate_gives_lintorchs_losses_and_regions(port, model, loss):
    body = problem(model, loss)
    status, answer = post(port, "/api/evaluate", body)
    assert status == 200, answer
    net, _, x, y, loss_fn, objective = reference(body)
    with torch.no_grad():
        scores = net(x)
        total, data = objective()
        R = total - data
        close(answer["scores"], scores)
        close(answer["L_i"], loss_fn(scores, y, reduction="none"))
        assert answer["data_loss"] == pytest.approx(data.item(), rel=0, abs=1e-12)
        assert answer["reg_loss"] == pytest.approx(R.item(), rel=0, abs=1e-12)
        assert answer["loss"] == pytest.approx(total.item(), rel=0, abs=1e-12)
        assert answer["accuracy"] == (scores.argmax(1) == y).double().mean().item()
        grid = answer["grid"]
        n, (xmin, xmax, ymin, ymax) = grid["size"], grid["extent"]
        centres = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        ys, xs = ymax - centres * (ymax - ymin), xmin + centres * (xmax - xmin)
        winners = [[net(torch.tensor([[u, v]], dtype=torch.float64)).argmax().item() for u in xs]
                   for v in ys[::16]]  # every 16th row, from the top
    assert len(grid["classes"]) == n * n
    assert [grid["classes"][i * n:(i + 1) * n] for i in range(0, n, 16)] == winners


@pytest.mark.parametrize("model,loss", CASES)
def test_gradient_check_sets_autograd_beside_the_numerical_gradient(port, model, loss):
    body = problem(model, loss, seed=1)
    status, answer = post(port, "/api/gradcheck", body)
    assert status == 200, answer
    _, params, *_, objective = reference(body)
    analytic = torch.autograd.grad(objective()[0], params)
    worst = 0.0
    for (_, got), grad in zip(answer["params"].items(), analytic):
        a = torch.tensor(got["analytic"], dtype=torch.float64)
        n = torch.tensor(got["numerical"], dtype=torch.float64)
        close(got["analytic"], grad)
        close(got["numerical"], a, atol=1e-8)
        rel = lintorch.relative_error(a, n)
        close(got["rel_error"], rel, atol=1e-15)
        assert got["max_rel_error"] == rel.max().item()
        assert got["max_rel_error_above_floor"] <= got["max_rel_error"]
        worst = max(worst, got["max_rel_error"])
    assert answer["max_rel_error"] == pytest.approx(worst, rel=1e-9, abs=1e-15)
    assert 1e-12 < answer["floor"] < 1e-8
    assert answer["max_rel_error_above_floor"] < 1e-5


def test_gradient_check_reports_zero_gradients_apart():
    # Balanced classes and every SVM margin active (scores ~ 0): dL/db is exactly 0, and the
    # numerical one is rounding noise, a relative error near 1 that means nothing.
    body = problem("mlp", "svm", name="separable")
    answer = demo.gradcheck(body)
    b2 = answer["params"]["b2"]
    assert max(map(abs, b2["analytic"] + b2["numerical"])) < answer["floor"]
    assert b2["max_rel_error_above_floor"] == 0.0
    assert answer["max_rel_error_above_floor"] < 1e-5 <= answer["max_rel_error"]


def test_presets_and_random_weights_are_seeded_and_leave_the_callers_generator_alone(port):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = post(port, "/api/preset", {"name": "rings", "seed": 4, "classes": 5})[1]
    assert a == post(port, "/api/preset", {"name": "rings", "seed": 4, "classes": 5})[1]
    assert a != post(port, "/api/preset", {"name": "rings", "seed": 5, "classes": 5})[1]
    assert sorted(set(a["labels"])) == [0, 1, 2, 3, 4] and len(a["points"]) == len(a["labels"])
    status, r = post(port, "/api/randomize", {"model": "linear", "classes": 4, "seed": 7})
    assert status == 200
    assert torch.equal(torch.rand(3), expected_next)  # the server restored the global generator
    torch.manual_seed(7)
    model = lintorch.LinearClassifier(2, 4).double()  # lintorch's own init, std 1e-3
    assert r["params"] == {"W": model.weight.tolist(), "b": model.bias.tolist()}
    status, r = post(port, "/api/randomize", {"model": "mlp", "classes": 3, "hidden": 6})
    assert status == 200 and [len(r["params"][k]) for k in ("W1", "b1", "W2", "b2")] == [6, 6, 3, 3]


def _without(body: dict, key: str) -> dict:
    return {k: v for k, v in body.items() if k != key}


def _literal(body: dict, text: str) -> bytes:
    """``body`` as JSON with the number 12345.5 written as ``text`` (e.g. 1e400, which
    json.dumps would turn into Infinity)."""
    return json.dumps(body).replace("12345.5", text).encode()


B = problem()
BAD = [  # (path, body, a part of the reason)
    ("/api/evaluate", b"{not json", "not JSON"),
    ("/api/evaluate", b'{"reg": NaN}', "NaN is not a number"),
    ("/api/evaluate", b'{"reg": -Infinity}', "-Infinity is not a number"),
    ("/api/evaluate", b"\xff\xfe\x00garbage", "not JSON"),
    ("/api/evaluate", [1, 2], "the body must be a JSON object, got a list of length 2"),
    ("/api/evaluate", {**B, "reg": "0.1"}, 'reg must be a number, got "0.1"'),
    ("/api/evaluate", {**B, "reg": True}, "reg must be a number, got true"),
    ("/api/evaluate", _literal({**B, "reg": 12345.5}, "1e400"),
     "reg must be finite, in [0, 100], got inf"),
    ("/api/evaluate", {**B, "model": 3}, "model must be one of linear, mlp, got 3"),
    ("/api/evaluate", {**B, "loss": "hinge"}, 'loss must be one of svm, softmax, got "hinge"'),
    ("/api/evaluate", _literal({**B, "points": [[0.5, 12345.5]] + B["points"][1:]}, "-1e999"),
     "points[0][1] must be finite, in [-100, 100], got -inf"),
    ("/api/evaluate", {**B, "points": [[0.5, 101]] + B["points"][1:]},
     "points[0][1] must be finite, in [-100, 100], got 101"),
    ("/api/evaluate", {**B, "points": [[0, 0]] * 1001, "labels": [0] * 1001},
     "points must be a list of 1 to 1000 [x, y] points, got a list of length 1001"),
    ("/api/evaluate", {**B, "points": [], "labels": []}, "points must be a list of 1 to 1000"),
    ("/api/evaluate", {**B, "points": B["points"][:-1]}, "labels must be a list of 44 labels"),
    ("/api/evaluate", {**B, "labels": [3] + B["labels"][1:]},
     "labels[0] must be finite, in [0, 2], got 3"),
    ("/api/evaluate", {**B, "labels": [0.0] + B["labels"][1:]},
     "labels[0] must be an integer, got 0.0"),
    ("/api/evaluate", {**B, "params": {"W": [[0, 0]] * 11, "b": [0] * 11}},
     "params.W must be a list of 2 to 10 rows (one per class), got a list of length 11"),
    ("/api/evaluate", {**B, "params": {**B["params"], "W": [[1, 2, 3]] * 3}},
     "params.W[0] must be a list of 2 numbers, got a list of length 3"),
    ("/api/evaluate", {**B, "params": {**B["params"], "b": [0, 0]}},
     "params.b must be a list of 3 numbers, got a list of length 2"),
    ("/api/evaluate", {**B, "params": {**B["params"], "b": [0, "x", 0]}},
     'params.b[1] must be a number, got "x"'),
    ("/api/evaluate", {**B, "params": {**B["params"], "W1": [[0, 0]]}},
     "unknown field 'W1' in params"),
    ("/api/evaluate", {**B, "model": "mlp"}, "unknown field 'W' in params"),
    ("/api/evaluate", {**B, "colour": "red"}, "unknown field 'colour' in the body"),
    ("/api/evaluate", _without(B, "labels"), "missing field 'labels' in the body"),
    ("/api/step", B, "missing field 'lr'"),
    ("/api/step", {**B, "lr": 1e3}, "lr must be finite, in [0, 100], got 1000"),
    ("/api/step", {**B, "lr": 0.1, "steps": 501}, "steps must be finite, in [1, 500]"),
    ("/api/step", {**B, "lr": 0.1, "steps": 10**400}, "steps must be finite, in [1, 500]"),
    ("/api/step", {**B, "lr": 100, "reg": 100, "steps": 5},
     "step 2 made the weights non-finite or over 1e6; lower the step size"),
    ("/api/preset", {"name": "spiral"}, "name must be one of separable, overlapping, rings"),
    ("/api/preset", {"name": "rings", "classes": 11}, "classes must be finite, in [2, 10]"),
    ("/api/randomize", {"model": "mlp", "classes": 3, "hidden": 65},
     "hidden must be finite, in [1, 64], got 65"),
]


@pytest.mark.parametrize("path,body,reason", BAD, ids=[r for _, _, r in BAD])
def test_bad_requests_get_400_and_the_reason(port, path, body, reason):
    status, answer = post(port, path, body)
    assert status == 400
    assert list(answer) == ["error"] and "\n" not in answer["error"]
    assert reason in answer["error"]


def test_a_body_too_big_or_without_length_is_refused_unread(port):
    status, answer = post(port, "/api/evaluate", b" " * (256 * 1024 + 1))
    assert status == 413 and answer == {"error": "the body is larger than 256 KB"}
    head = b"POST /api/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    status, body = raw(port, head + b"Content-Length: 10000000\r\n\r\n")
    assert status == 413 and "larger than 256 KB" in json.loads(body)["error"]
    status, body = raw(port, head + b"\r\n")
    assert status == 400 and "Content-Length" in json.loads(body)["error"]
    status, body = raw(port, head + b"Content-Length: -5\r\n\r\n")
    assert status == 400


def test_a_length_of_more_digits_than_python_parses_is_too_big_not_a_failure(port):
    head = b"POST /api/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    status, body = raw(port, head + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n")
    assert status == 413 and "larger than 256 KB" in json.loads(body)["error"]


def test_a_query_string_is_ignored_by_post_as_by_get(port):
    body = {"name": "rings", "seed": 3}
    assert post(port, "/api/preset?x=1", body) == post(port, "/api/preset", body)
    assert post(port, "/api/preset", body)[0] == 200
    assert post(port, "/api/nope?x=1", body)[0] == 404


def test_unknown_paths_are_404_and_the_page_is_served(port):
    for path in ["/nope", "/../README.md", "/demo.py", "/%2e%2e/pyproject.toml", "/api/evaluate",
                 "/demo_page/demo.js", "//etc/passwd"]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path)
        res = conn.getresponse()
        assert (res.status, list(json.loads(res.read()))) == (404, ["error"]), path
    assert post(port, "/api/nope", {})[0] == 404
    for path, kind, text in [("/", "text/html", b"<canvas"), ("/demo.js", "text/javascript",
                             b"/api/step"), ("/demo.css", "text/css", b"#plane")]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path)
        res = conn.getresponse()
        assert res.status == 200 and res.getheader("Content-Type") == kind
        assert text in res.read()


def _random_json(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "bool", "null", "big"] + ["list", "dict"] * (depth < 3)
    kind = rng.choice(kinds)
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == "dict":
        keys = list(B) + ["lr", "steps", "name", "seed", "W", "b", "x"]
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return {"int": lambda: rng.randrange(-5, 1200), "float": lambda: rng.uniform(-1e3, 1e3),
            "str": lambda: rng.choice(["", "svm", "mlp", "linear", "\u00e9\x00"]),
            "bool": lambda: rng.random() < 0.5, "null": lambda: None,
            "big": lambda: rng.choice([1e308, -1e308, 10**300, 2**64])}[kind]()


def _fuzz_requests(rng: random.Random):
    """(path, body): garbage, truncated JSON, random JSON, and valid requests with one field,
    or one number inside, replaced by something random."""
    paths = list(demo.ROUTES)
    valid = {"/api/evaluate": B, "/api/gradcheck": B, "/api/step": {**B, "lr": 0.1, "steps": 2},
             "/api/preset": {"name": "rings", "seed": 1, "classes": 4},
             "/api/randomize": {"model": "mlp", "classes": 3, "hidden": 4, "seed": 2}}
    yield "/api/evaluate", b""
    yield "/api/step", b"[" * 100_000 + b"]" * 100_000  # deeper than the parser recurses
    yield "/api/step", b'{"reg": 1' + b"0" * 5000 + b"}"  # more digits than Python parses
    yield "/api/preset", b'{"name": "rings", "seed": 1e999999}'
    for _ in range(50):
        yield rng.choice(paths), bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    for _ in range(50):
        path = rng.choice(paths)
        text = json.dumps(valid[path]).encode()
        yield path, text[:rng.randrange(len(text))]
    for _ in range(50):
        yield rng.choice(paths), json.dumps(_random_json(rng)).encode()
    for _ in range(150):
        path = rng.choice(paths)
        body = json.loads(json.dumps(valid[path]))
        key = rng.choice(list(body))
        if key in ("points", "params") and rng.random() < 0.7:
            inner = body[key]
            while isinstance(inner, (list, dict)):  # down to a random number inside
                parent, index = inner, rng.choice(list(inner) if isinstance(inner, dict)
                                                  else range(len(inner)))
                inner = inner[index]
            parent[index] = _random_json(rng, 2)
        else:
            body[key] = _random_json(rng)
        yield path, json.dumps(body).encode()


def test_fuzzed_bodies_get_200_or_400_and_the_server_keeps_answering(port):
    seen = set()
    for path, body in _fuzz_requests(random.Random(0)):
        status, answer = post(port, path, body)
        assert status in (200, 400), (status, answer, body[:200])
        assert status == 200 or list(answer) == ["error"]
        seen.add(status)
    assert seen == {200, 400}
    assert post(port, "/api/evaluate", B)[0] == 200


@pytest.mark.parametrize("argv,reason", [(["--port", "http"], "invalid int value"),
                                         (["--port", "70000"], "must be 0 to 65535"),
                                         (["--colour"], "unrecognized arguments")])
def test_usage_errors_exit_2(capsys, argv, reason):
    with pytest.raises(SystemExit) as stop:
        demo.main(argv)
    assert stop.value.code == 2 and reason in capsys.readouterr().err


def test_a_port_in_use_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "lintorch.demo", "--port", str(busy),
                              "--no-browser"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == f"error: port {busy} is in use; pass --port N (0: any free port)\n"


def test_ctrl_c_stops_the_server_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "lintorch.demo", "--port", "0",
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()  # printed once the server listens
    assert line.startswith("lintorch demo at http://127.0.0.1:")
    port = int(line.split(":")[2].split("/")[0])
    assert post(port, "/api/preset", {"name": "separable"})[0] == 200
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == ""
