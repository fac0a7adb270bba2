"""``clipterm models``: the packs, whether their weights are here, which one is the default,
how large a download is; ``--download`` fetches a pack's weights (or one CLIP)."""

from __future__ import annotations

import json

import typer


def models(
    download: str = typer.Option(None, "--download", help="Fetch a pack's weights (or a CLIP, MODEL:PRETRAINED) into the Hugging Face cache."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List the model packs, whether their weights are here, and their download sizes."""
    from clipterm.packs.listing import download_message, pack_rows, render_pack_rows

    if download:
        from clipterm.models import download_pack

        typer.echo(download_message(download, download_pack(download)))
        return
    rows = pack_rows()
    typer.echo(json.dumps(rows, indent=2) if as_json else "\n".join(render_pack_rows(rows)))
