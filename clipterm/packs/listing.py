"""What ``clipterm models`` shows: the packs, whether their weights are here, which one a
command uses by default, and how large a download is. No torch, no network."""

from __future__ import annotations

from typing import Any

from clipterm.packs import default_pack_name, list_pack_specs
from clipterm.packs.availability import pack_availability
from clipterm.sanitize import printable


def pack_rows() -> list[dict[str, Any]]:
    """One dict per built-in pack (the ``--json`` output)."""
    default = default_pack_name()
    rows = []
    for spec in list_pack_specs():
        rows.append({
            "name": spec.name,
            "description": spec.description,
            **pack_availability(spec),
            "default": spec.name == default,
            "vocabulary": spec.vocabulary,
            "download_mb": spec.download_mb,
            "captions": list(spec.captions),
            "default_prompt": spec.default_prompt,
        })
    return rows


def render_pack_rows(rows: list[dict[str, Any]]) -> list[str]:
    """The lines ``clipterm models`` prints."""
    lines = []
    for r in rows:
        if r["embedded"]:
            state = "always available (embedded)"
        elif r["available"]:
            state = "downloaded"
        else:
            size = f", about {r['download_mb']} MB" if r.get("download_mb") else ""
            state = f"not downloaded{size}"
        mark = "  [default]" if r.get("default") else ""
        lines.append(f"{r['name']:<10} {state}{mark}")
        lines.append(f"    {printable(r['description'])}")
        lines.append(f"    diffusion: {printable(r['diffusion'])} "
                     f"[{'ok' if r['diffusion_ok'] else 'missing'}]")
        lines.append(f"    clip:      {printable(r['clip'])} [{'ok' if r['clip_ok'] else 'missing'}]")
        vocab = "" if r["vocabulary"] == "open" else " (the only prompts it knows)"
        lines.append(f"    captions:  {printable(', '.join(r['captions']))}{vocab}")
        if not r["available"]:
            lines.append(f"    get it:    clipterm models --download {r['name']}")
    lines.append("The default pack (without --model) is cifar10 once downloaded, else digits.")
    return lines


def download_message(name: str, fetched: list[str]) -> str:
    """The line ``clipterm models --download NAME`` prints when it is done."""
    if not fetched:
        return f"{printable(name)}: embedded, nothing to fetch"
    return f"{printable(name)}: {', '.join(printable(f) for f in fetched)} cached"
