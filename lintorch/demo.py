"""The geometric viewpoint to play with: ``python -m lintorch.demo [--host 127.0.0.1] [--port
8000] [--no-browser]`` serves a page (demo_page/) that draws what this server computes, every
number in float64 with lintorch. It keeps no state: each request carries points and parameters.

JSON API: POST an object of at most 256 KB (413 beyond); a refused request gets 400 {"error":
reason}, an unknown field included. GET / and the page's three files come from memory; else 404.
  /api/evaluate  {model: linear|mlp, loss: svm|softmax, reg: λ, points: [[x, y], ...], labels,
                 params} -> {scores, L_i, data_loss, reg_loss, loss, accuracy, grid: {size,
                 extent: [xmin, xmax, ymin, ymax], classes: the winners, rows from the top}}
  /api/step      the same, lr, steps? (1) -> evaluate's answer at the new params, params,
                 losses (the objective before each step)
  /api/gradcheck as evaluate -> {h, floor, max_rel_error, max_rel_error_above_floor, params:
                 {name: {analytic, numerical, rel_error, max_rel_error[_above_floor]}}}: where
                 both gradients are under floor (100 eps |f| / h), they are 0 up to rounding
  /api/preset    {name: separable|overlapping|rings, seed?, classes? (3)} -> {points, labels}
  /api/randomize {model, classes, seed?, hidden? (8), std?} -> {params}
params: {W: C x 2, b: C} (LinearClassifier(2, C)) or {W1: H x 2, b1: H, W2: C x H, b2: C}
(SigmoidMLP(2, [H], C)), entries within 1e6; C in 2..10, H in 1..64, 1..1000 points within
100 of 0, λ and lr in [0, 100], steps 1..500. The objective is mean L_i + λ R, R = l2_penalty
of the weight matrices (never the biases); a step is torch.optim.SGD's p <- p - lr grad.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import sys
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

import torch

from .gradcheck import grad_check, numerical_gradient, relative_error
from .losses import cross_entropy, l2_penalty, svm_loss
from .models import LinearClassifier, SigmoidMLP

MAX_BODY, MAX_POINTS, MAX_HIDDEN, MAX_STEPS, MAX_ABS, H = 256 * 1024, 1000, 64, 500, 10**6, 1e-5
EXTENT, GRID, SEEDS = (-4.0, 4.0, -4.0, 4.0), 125, 2**31 - 1
LOSSES = {"svm": svm_loss, "softmax": cross_entropy}
NAMES = {"linear": {"W": "weight", "b": "bias"},  # the lecture's names -> the modules'
         "mlp": {"W1": "hidden.0.weight", "b1": "hidden.0.bias", "W2": "out.weight",
                 "b2": "out.bias"}}
PROBLEM = dict.fromkeys(("model", "loss", "reg", "points", "labels", "params"), True)
PAGES = {"/": "index.html", **{f"/{name}": name for name in ("index.html", "demo.js", "demo.css")}}
TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}
_rng_lock = threading.Lock()


class BadRequest(ValueError):
    """A request the demo refuses; the message is the reason sent back."""


def _check(ok: bool, reason: str) -> None:
    if not ok:
        raise BadRequest(reason)


def _kind(v) -> str:
    return f"a list of length {len(v)}" if isinstance(v, list) else json.dumps(v)[:30]


def _number(v, name: str, lo, hi, integer: bool = False):
    _check(isinstance(v, int if integer else (int, float)) and not isinstance(v, bool),
           f"{name} must be {'an integer' if integer else 'a number'}, got {_kind(v)}")
    # NaN fails the comparison too, and a number too big for a float (1e400) arrives as inf.
    _check(lo <= v <= hi, f"{name} must be finite, in [{lo}, {hi}], got {v!r:.30}")
    return v


def _length(v, name: str, lo: int, hi: int, what: str) -> int:
    _check(isinstance(v, list) and lo <= len(v) <= hi, f"{name} must be a list of "
           f"{lo if lo == hi else f'{lo} to {hi}'} {what}, got {_kind(v)}")
    return len(v)


def _tensor(v, name: str, shape: tuple[int, ...], bound=MAX_ABS) -> torch.Tensor:
    def walk(v, dims, where):
        if not dims:
            return _number(v, where, -bound, bound)
        _length(v, where, dims[0], dims[0], "numbers" if len(dims) == 1 else "rows")
        return [walk(x, dims[1:], f"{where}[{i}]") for i, x in enumerate(v)]
    return torch.tensor(walk(v, shape, name), dtype=torch.float64).reshape(shape)


def _choice(v, name: str, options) -> str:
    _check(isinstance(v, str) and v in options,
           f"{name} must be one of {', '.join(options)}, got {_kind(v)}")
    return v


def _fields(body, fields: dict[str, bool], where: str = "the body") -> dict:
    """``body`` if it is an object with every required field and no unknown one."""
    _check(isinstance(body, dict), f"{where} must be a JSON object, got {_kind(body)}")
    for name in body:
        _check(name in fields, f"unknown field {name!r} in {where} (known: {', '.join(fields)})")
    for name, required in fields.items():
        _check(name in body or not required, f"missing field {name!r} in {where}")
    return body


def _build(kind: str, classes: int, hidden: int, std: float | None = None, seed: int = 0):
    # lintorch's initialisers draw from torch's global generator, which the request threads
    # (and whoever runs the server in-process) share: seed it under a lock, restore it after.
    with _rng_lock, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kw = {} if std is None else {"init_std": std}
        net = LinearClassifier(2, classes, **kw) if kind == "linear" else SigmoidMLP(
            2, [hidden], classes, **kw)
    return net.double()


def _problem(body) -> tuple:
    """(model, loss function, λ, x, y) of an evaluate, step or gradcheck request."""
    kind = _choice(body["model"], "model", NAMES)
    loss_fn = LOSSES[_choice(body["loss"], "loss", LOSSES)]
    reg = _number(body["reg"], "reg", 0, 100)
    n = _length(body["points"], "points", 1, MAX_POINTS, "[x, y] points")
    x = _tensor(body["points"], "points", (n, 2), bound=100)
    _length(body["labels"], "labels", n, n, "labels (one per point)")
    params = _fields(body["params"], dict.fromkeys(NAMES[kind], True), "params")
    out = "W" if kind == "linear" else "W2"
    C = _length(params[out], f"params.{out}", 2, 10, "rows (one per class)")
    hidden = 0 if kind == "linear" else _length(params["W1"], "params.W1", 1, MAX_HIDDEN, "rows")
    shapes = dict(W=(C, 2), b=(C,), W1=(hidden, 2), b1=(hidden,), W2=(C, hidden), b2=(C,))
    net = _build(kind, C, hidden)
    net.load_state_dict({module_name: _tensor(params[k], f"params.{k}", shapes[k])
                         for k, module_name in NAMES[kind].items()})
    y = torch.tensor([_number(v, f"labels[{i}]", 0, C - 1, integer=True)
                      for i, v in enumerate(body["labels"])])
    return net, loss_fn, reg, x, y


def _objective(net, params: dict, loss_fn, reg: float, x, y):
    """(mean L_i + λ R(W), mean L_i, R(W), scores), with ``params`` in the model."""
    scores = torch.func.functional_call(net, params, (x,))
    data = loss_fn(scores, y)
    R = sum(l2_penalty(p) for name, p in params.items() if name.endswith("weight"))
    return data + reg * R, data, R, scores


def _report(net, loss_fn, reg, x, y) -> dict:
    xmin, xmax, ymin, ymax = EXTENT
    centres = (torch.arange(GRID, dtype=torch.float64) + 0.5) / GRID
    grid = torch.cartesian_prod(ymax - centres * (ymax - ymin), xmin + centres * (xmax - xmin))
    with torch.no_grad():
        total, data, R, scores = _objective(net, dict(net.named_parameters()), loss_fn, reg, x, y)
        winners = net(grid.flip(1)).argmax(1)  # (y, x) pairs, row by row, to (x, y) points
        L_i = loss_fn(scores, y, reduction="none")
    return {"scores": scores.tolist(), "L_i": L_i.tolist(), "data_loss": data.item(),
            "reg_loss": (reg * R).item(), "loss": total.item(),
            "accuracy": (scores.argmax(1) == y).double().mean().item(),
            "grid": {"size": GRID, "extent": list(EXTENT), "classes": winners.tolist()}}


def evaluate(body) -> dict:
    return _report(*_problem(_fields(body, PROBLEM)))


def step(body) -> dict:
    net, loss_fn, reg, x, y = _problem(_fields(body, dict(PROBLEM, lr=True, steps=False)))
    lr = _number(body["lr"], "lr", 0, 100)
    steps = _number(body.get("steps", 1), "steps", 1, MAX_STEPS, integer=True)
    params, losses = dict(net.named_parameters()), []
    optimizer = torch.optim.SGD(params.values(), lr=lr)
    for k in range(steps):
        total = _objective(net, params, loss_fn, reg, x, y)[0]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
        _check(all(p.abs().max() <= MAX_ABS for p in params.values()),  # NaN fails too
               f"step {k + 1} made the weights non-finite or over 1e6; lower the step size")
    return {"params": {k: params[m].tolist() for k, m in NAMES[body["model"]].items()},
            "losses": losses, **_report(net, loss_fn, reg, x, y)}


def gradcheck(body) -> dict:
    net, loss_fn, reg, x, y = _problem(_fields(body, PROBLEM))
    params, out, worst, above_floor = dict(net.named_parameters()), {}, 0.0, 0.0
    # A centred difference carries a rounding error of about eps |f| / h. Where both gradients
    # are under 100 times that (a bias whose gradient is exactly 0, say), their relative error
    # is noise, up to 1, and says nothing of the backward pass: it is reported apart.
    f0 = _objective(net, params, loss_fn, reg, x, y)[0].item()
    floor = 100 * torch.finfo(torch.float64).eps * max(abs(f0), 1.0) / H
    for k, module_name in NAMES[body["model"]].items():
        def f(t, module_name=module_name):  # the objective as a function of this parameter
            return _objective(net, {**params, module_name: t}, loss_fn, reg, x, y)[0]
        p = params[module_name].detach().clone().requires_grad_(True)
        (analytic,) = torch.autograd.grad(f(p), p)
        numerical = numerical_gradient(f, p.detach().clone(), h=H)
        rel = relative_error(analytic, numerical)
        significant = torch.maximum(analytic.abs(), numerical.abs()) > floor
        out[k] = {"analytic": analytic.tolist(), "numerical": numerical.tolist(),
                  "rel_error": rel.tolist(), "max_rel_error": rel.max().item(),
                  "max_rel_error_above_floor": (rel * significant).max().item()}
        above_floor = max(above_floor, out[k]["max_rel_error_above_floor"])
        worst = max(worst, grad_check(f, p.detach(), h=H))
    return {"h": H, "floor": floor, "max_rel_error": worst,
            "max_rel_error_above_floor": above_floor, "params": out}


def preset(body) -> dict:
    _fields(body, dict(name=True, seed=False, classes=False))
    name = _choice(body["name"], "name", ("separable", "overlapping", "rings"))
    gen = torch.Generator().manual_seed(_number(body.get("seed", 0), "seed", 0, SEEDS, True))
    C = _number(body.get("classes", 3), "classes", 2, 10, integer=True)
    k = torch.arange(C).repeat_interleave(15)
    noise = torch.randn(len(k), 2, generator=gen, dtype=torch.float64)
    if name == "rings":  # class k on a ring of radius ~ k + 1: no line separates them
        angle = 2 * torch.pi * torch.rand(len(k), generator=gen, dtype=torch.float64)
        radius, spread = 3.2 * (k[:, None] + 1) / C + 0.15 * noise[:, :1], 0.0
    else:  # a cloud per class around a circle: tight ones far apart, or wide ones mixed
        angle = 2 * torch.pi * k.double() / C + torch.pi / 2
        radius, spread = (2.4, 0.35) if name == "separable" else (1.3, 0.9)
    x = radius * torch.stack([angle.cos(), angle.sin()], 1) + spread * noise
    return {"points": x.mul(1000).round().div(1000).tolist(), "labels": k.tolist()}


def randomize(body) -> dict:
    _fields(body, dict(model=True, classes=True, seed=False, hidden=False, std=False))
    kind = _choice(body["model"], "model", NAMES)
    net = _build(kind, _number(body["classes"], "classes", 2, 10, integer=True),
                 _number(body.get("hidden", 8), "hidden", 1, MAX_HIDDEN, integer=True),
                 None if body.get("std") is None else _number(body["std"], "std", 0, 10),
                 _number(body.get("seed", 0), "seed", 0, SEEDS, integer=True))
    return {"params": {k: net.get_parameter(m).tolist() for k, m in NAMES[kind].items()}}


ROUTES = {"/api/evaluate": evaluate, "/api/step": step, "/api/gradcheck": gradcheck,
          "/api/preset": preset, "/api/randomize": randomize}


def _no_constant(name: str):
    raise BadRequest(f"not standard JSON: {name} is not a number")


class Handler(BaseHTTPRequestHandler):
    timeout = 10  # a client that promises a body and never sends it gives its thread back

    def do_GET(self) -> None:
        page = self.server.pages.get(self.path.split("?")[0])
        if page is None:
            return self._send(404, {"error": f"no such page: {self.path[:80]}"})
        self._send(200, page[1], page[0])

    def do_POST(self) -> None:
        route, status, length = ROUTES.get(self.path), 400, self.headers.get("Content-Length", "")
        try:
            _check(route is not None, f"no such endpoint: {self.path[:80]}")
            _check(length.isascii() and length.isdigit(), "a Content-Length header is needed")
            if int(length) > MAX_BODY:  # refused unread
                status = 413
                raise BadRequest(f"the body is larger than {MAX_BODY // 1024} KB")
            try:
                body = json.loads(self.rfile.read(int(length)), parse_constant=_no_constant)
            except (ValueError, RecursionError) as e:  # RecursionError: [[[[... too deep
                raise BadRequest(str(e) if isinstance(e, BadRequest) else f"not JSON: {e}") from e
            return self._send(200, json.dumps(route(body), allow_nan=False).encode())
        except BadRequest as e:
            reason = str(e)
        except Exception as e:  # a bug in here must cost one answer, never the server
            reason = f"the request could not be computed: {type(e).__name__}: {e}"
        self._send(404 if route is None else status, {"error": " ".join(reason.split())})

    def _send(self, status: int, body, content_type: str = "application/json") -> None:
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client left; nothing to tell it
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass  # a line per request would bury the address printed at the start


def make_server(host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """The demo's server, bound and ready for ``serve_forever``, its pages read into memory."""
    server = ThreadingHTTPServer((host, port), Handler)
    folder = resources.files("lintorch") / "demo_page"
    server.pages = {path: (TYPES[name.rsplit(".", 1)[1]], (folder / name).read_bytes())
                    for path, name in PAGES.items()}
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lintorch.demo",
                                description="lintorch's interactive demo: the geometric viewpoint",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free one)")
    p.add_argument("--no-browser", action="store_true", help="do not open the page")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error(f"argument --port: must be 0 to 65535, got {args.port}")
    try:
        server = make_server(args.host, args.port)
    except OSError as e:
        print(f"error: port {args.port} is in use; pass --port N (0: any free port)"
              if e.errno == errno.EADDRINUSE else
              f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    torch.set_num_threads(1)  # tiny tensors: more threads only spin
    url = f"http://{args.host}:{server.server_address[1]}/"
    print(f"lintorch demo at {url} (Ctrl-C stops it)", flush=True)
    if not args.no_browser:  # in a thread: a slow or console browser must not hold the server
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
