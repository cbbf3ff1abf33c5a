"""results.json and results.md: every number with the protocol that produced it."""
import json
import os


def row(evaluation: str, metric: str, value: float, **protocol) -> dict:
  """One result: {"evaluation", "metric", "value", "protocol": {...}}."""
  return dict(evaluation=evaluation, metric=metric, value=float(value), protocol=protocol)


def _fmt_protocol(p: dict) -> str:
  skip = ("checkpoint", "network", "layer")
  return "; ".join(f"{k}={v}" for k, v in p.items() if k not in skip and v not in (None, ""))


def _short(path) -> str:
  if isinstance(path, (list, tuple)):
    return " + ".join(_short(p) for p in path)
  return os.path.basename(os.path.normpath(str(path)))


def write(workdir: str, rows: list[dict], header: dict, plots: list[str] = (),
          tables: list[dict] = ()) -> tuple[str, str]:
  """Writes workdir/results.json ({"header", "results", "plots", "tables"}) and results.md: the
  `tables` ({"title", "columns", "rows"}, e.g. shaped like a paper's), a markdown table of the
  rows (left out when there are none) and the plots, linked and shown."""
  os.makedirs(workdir, exist_ok=True)
  json_path, md_path = os.path.join(workdir, "results.json"), os.path.join(workdir, "results.md")
  with open(json_path, "w") as f:
    json.dump(dict(header=header, results=rows, plots=list(plots), tables=list(tables)), f, indent=2,
              sort_keys=True, default=str)
  lines = ["# jssl evaluation", ""]
  lines += [f"- {k}: {v}" for k, v in header.items()]
  for t in tables:
    lines += ["", f"## {t['title']}", "", "| " + " | ".join(map(str, t["columns"])) + " |",
              "|" + "---|" * len(t["columns"])]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in t["rows"]]
  if rows:
    lines += ["", "| evaluation | checkpoint | network | layer | metric | value | protocol |",
              "|---|---|---|---|---|---|---|"]
  for r in rows:
    p = r["protocol"]
    lines.append(f"| {r['evaluation']} | {_short(p.get('checkpoint', ''))} | {p.get('network', '')} | "
                 f"{p.get('layer', '')} | {r['metric']} | {r['value']:.4f} | {_fmt_protocol(p)} |")
  if plots:
    lines += ["", "## Plots", ""]
  for p in plots:
    rel = os.path.relpath(p, workdir)
    lines += [f"- [{rel}]({rel})", "", f"  ![{rel}]({rel})", ""]
  with open(md_path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return json_path, md_path
