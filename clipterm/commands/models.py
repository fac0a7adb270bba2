"""``clipterm models``: the packs, and whether their weights are on this machine."""

from __future__ import annotations

import json

import typer

from clipterm.sanitize import printable


def models(
    download: str = typer.Option(None, "--download", help="Fetch a pack's weights into the standard cache."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List the model packs and whether their weights are on this machine."""
    from clipterm.packs import get_pack_spec, list_pack_specs

    if download:
        from clipterm.models import download_pack

        spec = get_pack_spec(download)
        fetched = download_pack(download)
        typer.echo(f"{printable(spec.name)}: " + (", ".join(fetched) + " cached" if fetched
                                                  else "embedded, nothing to fetch"))
        return
    from clipterm.packs.availability import pack_availability

    rows = []
    for spec in list_pack_specs():
        avail = pack_availability(spec)
        rows.append({"name": spec.name, "description": spec.description, **avail,
                     "captions": list(spec.captions), "default_prompt": spec.default_prompt})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "available" if r["available"] else "not downloaded"
        if r["embedded"]:
            state = "always available (embedded)"
        typer.echo(f"{printable(r['name']):<10} {state}")
        typer.echo(f"    {printable(r['description'])}")
        typer.echo(f"    diffusion: {printable(r['diffusion'])} [{'ok' if r['diffusion_ok'] else 'missing'}]")
        typer.echo(f"    clip:      {printable(r['clip'])} [{'ok' if r['clip_ok'] else 'missing'}]")
        typer.echo(f"    captions:  {', '.join(printable(c) for c in r['captions'])}")
        if not r["available"]:
            typer.echo(f"    get it:    clipterm models --download {printable(r['name'])}")
