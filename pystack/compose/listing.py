"""Tables and JSON for ``ps``, ``ls``, ``images`` and ``top``, in Docker Compose's layout."""
from __future__ import annotations

from pystack.humanize import human_duration  # noqa: F401 - also re-exported

import json
import re
import time
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from pystack.compose import labels as L
from pystack.compose.state import Container


def human_ago(created: float, now: float | None = None) -> str:
    """Docker's ``units.HumanDuration`` + " ago"."""
    return human_duration((now or time.time()) - created) + " ago"




def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


def ports_text(ports: list[dict]) -> str:
    out = []
    for p in sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""))):
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            if ":" in ip:
                ip = f"[{ip}]"
            out.append(f"{ip}:{p['PublicPort']}->{p['PrivatePort']}/{p.get('Type', 'tcp')}")
        else:
            out.append(f"{p['PrivatePort']}/{p.get('Type', 'tcp')}")
    return ", ".join(dict.fromkeys(out))


def table(rows: list[list[str]], gap: int = 3) -> str:
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append((" " * gap).join(cells).rstrip())
    return "\n".join(lines) + "\n"


def ps_record(c: Container) -> dict[str, Any]:
    raw = c.raw
    health = ""
    m = re.search(r"\((healthy|unhealthy|health: starting)\)", raw.get("Status", ""))
    if m:
        health = m.group(1).replace("health: ", "")
    networks = sorted(((raw.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    mounts = [m.get("Name") or m.get("Source", "") for m in raw.get("Mounts") or []]
    exit_code = 0
    em = re.match(r"Exited \((\d+)\)", raw.get("Status", ""))
    if em:
        exit_code = int(em.group(1))
    return {
        "Command": f'"{raw.get("Command", "")}"',
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(raw.get("Created", 0))),
        "ExitCode": exit_code,
        "Health": health,
        "ID": c.id[:12],
        "Image": raw.get("Image", ""),
        "Labels": ",".join(f"{k}={v}" for k, v in (raw.get("Labels") or {}).items()),
        "LocalVolumes": str(sum(1 for m in raw.get("Mounts") or [] if m.get("Type") == "volume")),
        "Mounts": ",".join(mounts),
        "Name": c.name,
        "Names": c.name,
        "Networks": ",".join(networks),
        "Ports": ports_text(raw.get("Ports") or []),
        "Project": c.labels.get(L.PROJECT, ""),
        "Publishers": [{"URL": p.get("IP", ""), "TargetPort": p.get("PrivatePort"),
                        "PublishedPort": p.get("PublicPort", 0), "Protocol": p.get("Type", "tcp")}
                       for p in raw.get("Ports") or []],
        "RunningFor": human_ago(raw.get("Created", 0)),
        "Service": c.service,
        "Size": "0B",
        "State": c.state,
        "Status": raw.get("Status", ""),
    }


def render_template(template: str, record: dict[str, Any]) -> str:
    """The ``{{.Field}}`` subset of Go templates (plus ``{{json .}}``) that people use with --format."""
    template = template.removeprefix("table ").replace("\\t", "\t").replace("\\n", "\n")

    def sub(m: re.Match) -> str:
        expr = m.group(1).strip()
        if expr in ("json .", "json ."):
            return json.dumps(record)
        if expr.startswith("json ."):
            return json.dumps(record.get(expr[6:]))
        if expr.startswith("."):
            value = record.get(expr[1:], "")
            return value if isinstance(value, str) else json.dumps(value)
        return m.group(0)

    return re.sub(r"\{\{\s*(.*?)\s*\}\}", sub, template)


def ps_output(containers: list[Container], fmt: str, no_trunc: bool = False) -> str:
    records = [ps_record(c) for c in containers]
    if no_trunc:
        for r, c in zip(records, containers):
            r["ID"] = c.id
    if fmt == "json":
        return "".join(json.dumps(r) + "\n" for r in records)
    if fmt == "table":
        rows = [["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]]
        for r in records:
            cmd = r["Command"]
            if not no_trunc and len(cmd) > 22:
                cmd = cmd[:20] + '…"'
            rows.append([r["Name"], r["Image"], cmd, r["Service"], r["RunningFor"], r["Status"], r["Ports"]])
        return table(rows)
    return "".join(render_template(fmt, r) + "\n" for r in records)


def ls_output(client: Any, show_all: bool, quiet: bool, filters: tuple[str, ...], fmt: str) -> str:
    projects: dict[str, dict[str, Any]] = {}
    for raw in client.containers(all=True, labels=[L.PROJECT]):
        c = Container(raw)
        name = c.labels.get(L.PROJECT, "")
        p = projects.setdefault(name, {"states": {}, "files": c.labels.get(L.CONFIG_FILES, "")})
        p["states"][c.state] = p["states"].get(c.state, 0) + 1
    name_filter = [f.partition("=")[2] for f in filters if f.startswith("name=")]
    rows = []
    for name in sorted(projects):
        p = projects[name]
        if not show_all and not p["states"].get("running"):
            continue
        if name_filter and not any(n in name for n in name_filter):
            continue
        status = ", ".join(f"{s}({n})" for s, n in sorted(p["states"].items()))
        rows.append({"Name": name, "Status": status, "ConfigFiles": p["files"]})
    if quiet:
        return "".join(r["Name"] + "\n" for r in rows)
    if fmt == "json":
        return json.dumps(rows) + "\n"
    return table([["NAME", "STATUS", "CONFIG FILES"]] + [[r["Name"], r["Status"], r["ConfigFiles"]] for r in rows])


def images_output(client: Any, containers: list[Container], quiet: bool, fmt: str) -> str:
    records = []
    cache: dict[str, dict] = {}
    for c in containers:
        image_id = c.raw.get("ImageID", "")
        if image_id not in cache:
            try:
                cache[image_id] = client.image_inspect(image_id)
            except Exception:  # noqa: BLE001 - an image removed under the container
                cache[image_id] = {}
        info = cache[image_id]
        ref = c.raw.get("Image", "")
        tags = info.get("RepoTags") or []
        if ref and ":" not in ref.rsplit("/", 1)[-1] and "@" not in ref:
            ref = ref + ":latest"
        chosen = ref if ref in tags else (tags[0] if tags else "<none>:<none>")
        repo, _, tag = chosen.rpartition(":")
        records.append({"ID": image_id, "ContainerName": c.name, "Repository": repo, "Tag": tag,
                        "Platform": f"{info.get('Os', 'linux')}/{info.get('Architecture', '')}",
                        "Size": info.get("Size", 0), "Created": info.get("Created", "")})
    if quiet:
        return "".join(dict.fromkeys(r["ID"].removeprefix("sha256:")[:12] + "\n" for r in records))
    if fmt == "json":
        return json.dumps(records) + "\n"
    rows = [["CONTAINER", "REPOSITORY", "TAG", "PLATFORM", "IMAGE ID", "SIZE", "CREATED"]]
    for r in records:
        rows.append([r["ContainerName"], r["Repository"], r["Tag"], r["Platform"],
                     r["ID"].removeprefix("sha256:")[:12], human_size(r["Size"]), _created(r["Created"])])
    return table(rows)


def _created(value: str) -> str:
    if not value:
        return ""
    from datetime import datetime

    try:
        ts = datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return value
    return human_ago(ts)


def top_output(client: Any, containers: list[Container]) -> str:
    rows: list[list[str]] = []
    header: list[str] | None = None
    for c in containers:
        top = client.top(c.id)
        titles = top.get("Titles") or []
        if header is None:
            header = ["SERVICE", "#"] + titles
            rows.append(header)
        for proc in top.get("Processes") or []:
            rows.append([c.service, str(c.number)] + list(proc))
    return table(rows, gap=2)
