"""The shape of the house: imports that run one way only, no private name borrowed from
another module, functions short enough to read, and a thin command line."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "realtime"
LONGEST = 80  # lines a function may have
EXEMPT = {("web/ui.py", "build")}  # the declarative Gradio layout


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(module imported, names taken) for every import in the file, lazy ones included."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [a.name for a in node.names]
            out.append((target, names))
            out += [(f"{target}.{n}", []) for n in names if f"{target}.{n}" in modules]
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return [(t, n) for t, n in out if t in modules and t != name]


def test_no_import_runs_in_a_circle():
    modules = _modules()
    graph = {m: {t for t, _ in _imports(m, p, modules)} for m, p in modules.items()}
    done: set[str] = set()

    def walk(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError("imports run in a circle: " + " -> ".join([*path[path.index(m) :], m]))
        if m in done:
            return
        for t in sorted(graph[m]):
            walk(t, [*path, m])
        done.add(m)

    for m in sorted(graph):
        walk(m, [])


def test_the_circle_check_finds_a_circle(monkeypatch):
    """Measure the measure: two modules importing each other are caught."""
    import pytest

    monkeypatch.setattr(
        __name__ + "._imports",
        lambda name, path, modules: [("realtime.b" if name == "realtime.a" else "realtime.a", [])],
    )
    monkeypatch.setattr(__name__ + "._modules", lambda: {"realtime.a": Path("a"), "realtime.b": Path("b")})
    with pytest.raises(AssertionError, match="circle"):
        test_no_import_runs_in_a_circle()


def test_no_private_name_is_imported_from_another_module():
    modules = _modules()
    borrowed = [
        f"{m} takes {n} from {t}"
        for m, p in modules.items()
        for t, names in _imports(m, p, modules)
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not borrowed


def test_functions_are_short_and_the_command_line_thin():
    long = []
    for p in PACKAGE.rglob("*.py"):
        where = p.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (where, node.name) not in EXEMPT:
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST:
                    long.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {LONGEST} lines: {long}"
    assert len((PACKAGE / "cli.py").read_text().splitlines()) <= 250


def test_every_frame_taker_keeps_the_sink_contract(tmp_path):
    """Whatever takes a stream's frames derives from ``sinks.Sink``; closing twice does
    nothing more; a closed feed clears the pages once, and a channel outlives its feeds."""
    import importlib
    import inspect
    from fractions import Fraction

    import numpy as np

    from realtime.records import Frame, Output
    from realtime.sinks import Sink

    takers = []
    for name in _modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and ("send" in vars(cls) or "take" in vars(cls)):
                takers.append(cls)
    assert len(takers) >= 8
    assert [c.__qualname__ for c in takers if not issubclass(c, Sink)] == []

    from realtime.web.live import Channel, Feed

    channel = Channel()
    frame = Frame(np.zeros((4, 4, 3), np.uint8), 0, Fraction(1, 25), 0, 0.0)
    for _ in range(2):  # two streams, one after the other, into one channel
        feed = Feed(channel)
        feed.take(Output(frame, np.full((4, 4, 3), 9, np.uint8), None))
        assert channel._latest[1].image.max() == 9
        feed.close()
        feed.close()
        assert channel._latest[1].image.max() == 0
    assert channel.published == 4  # two frames, two clears: the second close did nothing
