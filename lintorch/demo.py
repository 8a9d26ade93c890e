"""The geometric viewpoint: ``python -m lintorch.demo [--host 127.0.0.1] [--port 8000]
[--no-browser]`` serves demo_page/ and answers its JSON POSTs (at most 256 KB, else 413) in float64
with lintorch, keeping no state, or refuses them with 400 {"error": reason}. Bounds: FIELDS.
  /api/evaluate  problem -> {scores, L_i, data_loss, reg_loss, loss, accuracy, grid}
  /api/step      problem, lr, steps? (1) -> evaluate's answer after, params, losses before each
  /api/gradcheck problem -> {h, floor, max_rel_error[_above_floor], params: {W: {analytic, ...}}}
  /api/preset    {name: separable|overlapping|rings, seed?, classes? (3)} -> {points, labels}
  /api/randomize {model, classes, seed?, hidden? (8), std?} -> {params}
problem: {model: linear|mlp, loss: svm|softmax, reg, points: [[x, y], ...], labels, params: {W, b}
or {W1, b1, W2, b2}}; grid: {size, extent, classes: the winners, row by row from the top}.
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

from .gradcheck import numerical_gradient, relative_error
from .losses import CLASSIFIERS, LOSSES, l2_penalty
from .models import LinearClassifier, SigmoidMLP
from .update_rules import SGD

MAX_BODY, MAX_POINTS, MAX_HIDDEN, MAX_ABS, H = 256 * 1024, 1000, 64, 10**6, 1e-5
EXTENT, GRID = (-4.0, 4.0, -4.0, 4.0), 125
NAMES = {"linear": ("W", "b"), "mlp": ("W1", "b1", "W2", "b2")}  # in the modules' order
FIELDS = {"model": (str, tuple(NAMES)), "loss": (str, CLASSIFIERS), "reg": (float, 0, 100),
          "name": (str, ("separable", "overlapping", "rings")), "lr": (float, 0, 100),
          "steps": (int, 1, 500), "seed": (int, 0, 2**31 - 1), "classes": (int, 2, 10),
          "hidden": (int, 1, MAX_HIDDEN), "std": (float, 0, 10)}  # (str, choices), (type, lo, hi)
DEFAULTS = {"steps": 1, "seed": 0, "classes": 3, "hidden": 8, "std": None}  # and for a null std
PROBLEM = "model loss reg points labels params"
PAGES = {"index.html": "text/html", "demo.js": "text/javascript", "demo.css": "text/css"}
_rng_lock = threading.Lock()


class BadRequest(ValueError):
    """A request the demo refuses; the message is the reason sent back."""


def _check(ok: bool, reason: str, *got) -> None:
    if not ok:  # got: the value refused, a list by its length, anything else as JSON
        raise BadRequest(reason + "".join(f", got a list of length {len(v)}" if isinstance(v, list)
                                          else f", got {json.dumps(v)[:30]}" for v in got))


def _want(v, name: str, kind, lo=None, hi=None, what: str = "numbers", dims: tuple = ()):
    """``v`` checked as a ``kind``: dict (the fields lo; returns their values), str (one of lo),
    a number in [lo, hi] (or ``dims``-shaped lists of them), or list (lo to hi long; its length)."""
    if kind is dict:
        fields = {f.rstrip("?"): not f.endswith("?") for f in lo.split()}
        _check(isinstance(v, dict), f"{name} must be a JSON object", v)
        for f in v:
            _check(f in fields, f"unknown field {f!r} in {name} (known: {', '.join(fields)})")
        for f, required in fields.items():
            _check(f in v or not required, f"missing field {f!r} in {name}")
        return [x if f not in FIELDS or (f == "std" and x is None) else _want(x, f, *FIELDS[f])
                for f, x in zip(fields, [v.get(f, DEFAULTS.get(f)) for f in fields])]
    if dims:
        _want(v, name, list, dims[0], dims[0], what if len(dims) == 1 else "rows")
        return [_want(x, f"{name}[{i}]", kind, lo, hi, dims=dims[1:]) for i, x in enumerate(v)]
    if kind is list:
        _check(isinstance(v, list) and lo <= len(v) <= hi,
               f"{name} must be a list of {lo if lo == hi else f'{lo} to {hi}'} {what}", v)
        return len(v)
    if kind is str:
        _check(isinstance(v, str) and v in lo, f"{name} must be one of {', '.join(lo)}", v)
        return v
    _check(isinstance(v, (int, kind)) and not isinstance(v, bool),
           f"{name} must be {'an integer' if kind is int else 'a number'}", v)
    # NaN fails the comparison too, and a number too big for a float (1e400) arrives as inf.
    _check(lo <= v <= hi, f"{name} must be finite, in [{lo}, {hi}], got {v!r:.30}")
    return v


def _problem(body, more: str = "") -> tuple:
    kind, loss, reg, points, labels, raw, *more = _want(body, "the body", dict, PROBLEM + more)
    n = _want(points, "points", list, 1, MAX_POINTS, "[x, y] points")
    x = torch.tensor(_want(points, "points", float, -100, 100, dims=(n, 2)), dtype=torch.float64)
    _want(raw, "params", dict, " ".join(NAMES[kind]))
    C = _want(raw[w := NAMES[kind][-2]], f"params.{w}", list, 2, 10, "rows (one per class)")
    hidden = 0 if kind == "linear" else _want(raw["W1"], "params.W1", list, 1, MAX_HIDDEN, "rows")
    with torch.device("meta"):  # shapes only, nothing drawn: the weights come from the request
        net = LinearClassifier(2, C) if kind == "linear" else SigmoidMLP(2, [hidden], C)
    net.load_state_dict({m: torch.tensor(_want(raw[k], f"params.{k}", float, -MAX_ABS, MAX_ABS,
                                               dims=t.shape), dtype=torch.float64)
                         for k, (m, t) in zip(NAMES[kind], net.state_dict().items())}, assign=True)
    y = torch.tensor(_want(labels, "labels", int, 0, C - 1, "labels (one per point)", dims=(n,)))

    def objective() -> tuple:  # (mean L_i + λ R, mean L_i, λ R, scores) at the model's weights
        R = sum(l2_penalty(p) for name, p in net.named_parameters() if name.endswith("weight"))
        return (data := LOSSES[loss](scores := net(x), y)) + reg * R, data, reg * R, scores
    return net, objective, LOSSES[loss], y, *more  # *more: the values of the fields more


def evaluate(body, more: str = "") -> dict:
    net, objective, loss_fn, y, *_ = _problem(body, more)
    (xmin, xmax, ymin, ymax), c = EXTENT, (torch.arange(GRID, dtype=torch.float64) + 0.5) / GRID
    grid = torch.cartesian_prod(ymax - c * (ymax - ymin), xmin + c * (xmax - xmin)).flip(1)
    (total, data, reg_loss, scores), winners = objective(), net(grid).argmax(1)
    return {"scores": scores.tolist(), "L_i": loss_fn(scores, y, reduction="none").tolist(),
            "data_loss": data.item(), "reg_loss": reg_loss.item(), "loss": total.item(),
            "accuracy": (scores.argmax(1) == y).double().mean().item(),
            "grid": {"size": GRID, "extent": list(EXTENT), "classes": winners.tolist()}}


def step(body) -> dict:
    net, objective, _, _, lr, steps = _problem(body, " lr steps?")
    losses, optimizer = [], SGD(net.parameters(), lr=lr)
    for k in range(steps):
        optimizer.zero_grad()
        losses.append((total := objective()[0]).item())
        total.backward()
        optimizer.step()
        _check(all(p.abs().max() <= MAX_ABS for p in net.parameters()),  # NaN fails too
               f"step {k + 1} made the weights non-finite or over 1e6; lower the step size")
    new = dict(zip(NAMES[body["model"]], (p.tolist() for p in net.parameters())))
    return {"params": new, "losses": losses, **evaluate({**body, "params": new}, " lr steps?")}


def gradcheck(body) -> dict:
    net, objective, *_ = _problem(body)
    out, total, params = {}, objective()[0], list(net.parameters())  # in the order of NAMES
    # A centred difference rounds by ~eps |f| / h: under 100 times that, a relative error is noise
    floor = 100 * torch.finfo(torch.float64).eps * max(abs(total.item()), 1.0) / H
    for k, p, a in zip(NAMES[body["model"]], params, torch.autograd.grad(total, params)):
        n = numerical_gradient(lambda _: objective()[0], p.detach(), h=H)  # moves p, restores it
        rel = relative_error(a, n)
        out[k] = {"analytic": a.tolist(), "numerical": n.tolist(), "rel_error": rel.tolist(),
                  "max_rel_error": rel.max().item(), "max_rel_error_above_floor":
                  (rel * (torch.maximum(a.abs(), n.abs()) > floor)).max().item()}
    return {"h": H, "floor": floor, **{key: max([0.0] + [o[key] for o in out.values()]) for key
                                       in ("max_rel_error", "max_rel_error_above_floor")},
            "params": out}


def preset(body) -> dict:
    name, seed, C = _want(body, "the body", dict, "name seed? classes?")
    gen, k = torch.Generator().manual_seed(seed), torch.arange(C).repeat_interleave(15)
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
    kind, C, seed, hidden, std = _want(body, "the body", dict, "model classes seed? hidden? std?")
    with _rng_lock, torch.random.fork_rng([]):  # lintorch's init draws on the shared generator
        torch.manual_seed(seed)
        kw = {} if std is None else {"init_std": std}
        net = LinearClassifier(2, C, **kw) if kind == "linear" else SigmoidMLP(2, [hidden], C, **kw)
    return {"params": dict(zip(NAMES[kind], (p.tolist() for p in net.parameters())))}


ROUTES = {f"/api/{f.__name__}": f for f in (evaluate, step, gradcheck, preset, randomize)}


class Handler(BaseHTTPRequestHandler):
    timeout = 10  # a client that promises a body and never sends it gives its thread back

    def do_GET(self) -> None:
        self._send(*self.server.pages.get(self.path.partition("?")[0], (
            404, {"error": f"no such page: {self.path[:80]}"})))

    def do_POST(self) -> None:
        route, status = ROUTES.get(self.path.partition("?")[0]), 400  # a query string, as GET
        length = self.headers.get("Content-Length", "")
        try:
            _check(route is not None, f"no such endpoint: {self.path[:80]}")
            _check(length.isascii() and length.isdigit(), "a Content-Length header is needed")
            digits = length.lstrip("0") or "0"  # int() refuses more than 4,300 digits
            status = 413 if len(digits) > 9 or int(digits) > MAX_BODY else 400  # refused unread
            _check(status == 400, f"the body is larger than {MAX_BODY // 1024} KB")
            try:
                body = json.loads(self.rfile.read(int(digits)), parse_constant=lambda name: _check(
                    False, f"not standard JSON: {name} is not a number"))
            except (ValueError, RecursionError) as e:  # RecursionError: [[[[... too deep
                raise BadRequest(str(e) if isinstance(e, BadRequest) else f"not JSON: {e}") from e
            return self._send(200, json.dumps(route(body), allow_nan=False).encode())
        except Exception as e:  # a bug in here must cost one answer, never the server
            reason = str(e) if isinstance(e, BadRequest) else (
                f"the request could not be computed: {type(e).__name__}: {e}")
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
    """The demo's server (daemon threads), ready for ``serve_forever``, its pages in memory."""
    server, folder = ThreadingHTTPServer((host, port), Handler), resources.files("lintorch")
    server.pages = {f"/{name}": (200, (folder / "demo_page" / name).read_bytes(), content_type)
                    for name, content_type in PAGES.items()}
    server.pages["/"] = server.pages["/index.html"]
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
              if e.errno == errno.EADDRINUSE else f"error: cannot listen on "
              f"{args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)  # tiny tensors: more threads only spin
    url = f"http://{args.host}:{server.server_address[1]}/"
    print(f"lintorch demo at {url} (Ctrl-C stops it)", flush=True)
    if not args.no_browser:  # in a thread: a slow or console browser must not hold the server
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    with server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
