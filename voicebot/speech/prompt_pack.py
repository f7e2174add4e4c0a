"""Prompt packs: rendered prompts moved between machines as one zip file.

``voicebot prompts export FILE`` packs every described rendering of the prompt cache (``<key>.ulaw``
with its ``<key>.json``); ``voicebot prompts import FILE`` unpacks them into another cache. So
prompts rendered with edge-tts (or any engine) where it is reachable serve an offline server.

A pack is a zip holding ``manifest.json`` and ``prompts/<key>.ulaw`` files. The manifest lists,
per prompt, the engine, voice, language and text it was rendered from, the audio format (8 kHz
mu-law), its size and SHA-256. Import checks everything before writing anything: the key must be
the one engine + voice + language + text give (the cache key does not change), each file's size
and checksum must match, and sizes are bounded. A bad pack is refused whole, with a message that
names the prompt and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from voicebot.speech.prompt_cache import (
    PROMPT_RATE,
    RENDER_VERSION,
    _write_atomically,
    read_metadata,
    rendering_key,
    write_metadata,
)

PACK_FORMAT = "voicebot-prompt-pack"
PACK_VERSION = 1
MANIFEST = "manifest.json"
MAX_PROMPTS = 20_000
"""Prompts a pack may hold."""
MAX_PROMPT_BYTES = 8000 * 120
"""Largest prompt (two minutes of 8 kHz mu-law)."""
MAX_MANIFEST_BYTES = 32 * 1024 * 1024

_KEY = re.compile(r"^[0-9a-f]{64}$")


class PromptPackError(ValueError):
    """A pack that cannot be imported; the message says what is wrong and what to do."""


@dataclass(frozen=True, slots=True)
class PackSummary:
    """What an export or import did."""

    prompts: int
    engines: dict[str, int]
    """Prompts per engine name."""


def _summary(entries: list[dict]) -> PackSummary:
    engines: dict[str, int] = {}
    for entry in entries:
        engines[entry["engine"]] = engines.get(entry["engine"], 0) + 1
    return PackSummary(len(entries), engines)


def export_pack(
    cache_dir: str | Path, file: str | Path, engines: set[str] | None = None
) -> PackSummary:
    """Write every described rendering in ``cache_dir`` into the zip ``file`` (blocking).

    ``engines``: only renderings by these engines (e.g. ``{"edge"}``). Imported renderings are
    exported too (a pack can be passed on).
    """
    cache_dir = Path(cache_dir)
    entries = []
    for meta_path in sorted(cache_dir.glob("*.json")):
        key = meta_path.stem
        audio_path = cache_dir / f"{key}.ulaw"
        metadata = read_metadata(meta_path)
        if not _KEY.match(key) or metadata is None or not audio_path.is_file():
            continue
        if metadata.get("render_version", RENDER_VERSION) != RENDER_VERSION:
            continue
        fields = {name: metadata.get(name) for name in ("engine", "voice", "language", "text")}
        if not all(isinstance(value, str) for value in fields.values()):
            continue
        if rendering_key(**fields) != key:
            continue  # described wrongly: do not pass it on
        if engines is not None and fields["engine"] not in engines:
            continue
        entries.append((key, fields, audio_path.read_bytes()))
    if not entries:
        raise PromptPackError(
            f"{cache_dir}: no rendered prompts to export"
            + (f" by {', '.join(sorted(engines))}" if engines else "")
            + "; render them first (`voicebot prompts`)"
        )
    manifest_entries = []
    target = Path(file)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as pack:
        for key, fields, data in entries:
            name = f"prompts/{key}.ulaw"
            pack.writestr(name, data)
            manifest_entries.append(
                {
                    "key": key,
                    **fields,
                    "file": name,
                    "encoding": "mulaw",
                    "sample_rate": PROMPT_RATE,
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
        manifest = {
            "format": PACK_FORMAT,
            "version": PACK_VERSION,
            "render_version": RENDER_VERSION,
            "prompts": manifest_entries,
        }
        pack.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
    temp.replace(target)
    return _summary(manifest_entries)


def _refuse(file: Path, what: str) -> PromptPackError:
    return PromptPackError(
        f"{file}: not imported, {what}; nothing was changed. Export the pack again on the "
        "machine that rendered it (`voicebot prompts export FILE`) and copy it whole"
    )


def _read_manifest(pack: zipfile.ZipFile, file: Path) -> list[dict]:
    try:
        info = pack.getinfo(MANIFEST)
    except KeyError:
        raise _refuse(file, f"it holds no {MANIFEST}") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise _refuse(file, f"its {MANIFEST} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(pack.read(info).decode("utf-8"))
    except (ValueError, zipfile.BadZipFile) as exc:
        raise _refuse(file, f"its {MANIFEST} cannot be read ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise _refuse(file, "it is not a voicebot prompt pack")
    if manifest.get("version") != PACK_VERSION:
        raise _refuse(file, f"pack version {manifest.get('version')!r} (this server reads 1)")
    if manifest.get("render_version") != RENDER_VERSION:
        raise _refuse(
            file,
            f"it was rendered for prompt format {manifest.get('render_version')!r}, this "
            f"server plays format {RENDER_VERSION}",
        )
    prompts = manifest.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise _refuse(file, "its manifest lists no prompts")
    if len(prompts) > MAX_PROMPTS:
        raise _refuse(file, f"it lists {len(prompts)} prompts (at most {MAX_PROMPTS})")
    return prompts


def _checked_entry(pack: zipfile.ZipFile, file: Path, index: int, entry) -> tuple[dict, bytes]:
    where = f"prompt {index}"
    if not isinstance(entry, dict):
        raise _refuse(file, f"{where} of the manifest is not a mapping")
    fields = {name: entry.get(name) for name in ("engine", "voice", "language", "text")}
    for name, value in fields.items():
        if not isinstance(value, str) or (name != "voice" and not value):
            raise _refuse(file, f"{where} has no {name}")
    where = f"prompt {index} ({fields['engine']}, {fields['language']}: {fields['text'][:30]!r})"
    key = entry.get("key")
    if key != rendering_key(**fields):
        raise _refuse(file, f"{where}: its key does not match its engine, voice, language, text")
    if entry.get("encoding") != "mulaw" or entry.get("sample_rate") != PROMPT_RATE:
        raise _refuse(file, f"{where}: audio must be {PROMPT_RATE} Hz mu-law")
    name = f"prompts/{key}.ulaw"
    try:
        info = pack.getinfo(name)
    except KeyError:
        raise _refuse(file, f"{where}: its audio file {name} is missing") from None
    if info.file_size > MAX_PROMPT_BYTES or info.file_size != entry.get("bytes"):
        raise _refuse(file, f"{where}: its audio file's size does not match the manifest")
    try:
        data = pack.read(info)
    except (zipfile.BadZipFile, OSError) as exc:  # the zip's own CRC check
        raise _refuse(file, f"{where}: its audio cannot be read ({exc})") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise _refuse(file, f"{where}: checksum mismatch (the audio was changed or damaged)")
    return {**fields, "key": key}, data


def import_pack(file: str | Path, cache_dir: str | Path, *, imported: bool = True) -> PackSummary:
    """Verify the zip ``file`` and copy its prompts into ``cache_dir`` (blocking).

    ``imported=False`` seeds the cache instead (the renderings that ship with voicebot, see
    :mod:`voicebot.speech.bundled_prompts`): each prompt is filed as if this machine's engine had
    rendered it, played only when that engine and voice would speak it, and a prompt already
    in the cache is kept. Raises :class:`PromptPackError` for a pack that is not whole and valid
    (nothing is written).
    """
    file = Path(file)
    cache_dir = Path(cache_dir)
    if not file.is_file():
        raise PromptPackError(f"{file}: no such file")
    try:
        with zipfile.ZipFile(file) as pack:
            prompts = _read_manifest(pack, file)
            checked = [_checked_entry(pack, file, i, entry) for i, entry in enumerate(prompts)]
    except zipfile.BadZipFile as exc:
        raise _refuse(file, f"it is not a zip file ({exc})") from None
    written = []
    for fields, data in checked:
        key = fields["key"]
        if not imported and (cache_dir / f"{key}.ulaw").is_file():
            continue
        _write_atomically(cache_dir / f"{key}.ulaw", data)
        metadata = {k: fields[k] for k in ("engine", "voice", "language", "text")}
        metadata.update(sample_rate=PROMPT_RATE, render_version=RENDER_VERSION)
        if imported:
            metadata.update(imported=True, pack=file.name)
        write_metadata(cache_dir / f"{key}.json", metadata)
        written.append(fields)
    return _summary(written)
