"""No two jssl modules import each other, directly or through others (imports inside functions count)."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _graph() -> dict[str, set[str]]:
  modules = {}
  for folder, _, files in os.walk(os.path.join(ROOT, "jssl")):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        mod = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
        modules[mod] = path
  graph = {}
  for mod, path in modules.items():
    deps = set()
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.Import):
        deps |= {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        deps |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    graph[mod] = {d for d in deps if d in modules and d != mod and not mod.startswith(d + ".")}
  return graph


def _cycle(graph):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(m, stack):
    state[m] = "open"
    for d in sorted(graph[m]):
      if state.get(d) == "open":
        return stack[stack.index(d):] + [d]
      if d not in state:
        found = visit(d, stack + [d])
        if found:
          return found
    state[m] = "done"
    return None

  for m in sorted(graph):
    if m not in state:
      found = visit(m, [m])
      if found:
        return found
  return None


def test_no_import_cycles():
  graph = _graph()
  assert "jssl.data.fashion_mnist" in graph["jssl.data.sources"]
  assert _cycle(graph) is None, " -> ".join(_cycle(graph))
