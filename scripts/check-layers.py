#!/usr/bin/env python3
"""Checks the layering of src/ against docs/ARCHITECTURE.md.

Reads the "Layers" table (layer | folder | … | may include | …), then fails
when a file under src/FOLDER includes "OTHER/…" that its row does not allow,
when an allowed folder is not on a lower layer (a cycle could form), or when a
folder of src/ is missing from the table.

    scripts/check-layers.py [SOURCE_ROOT]
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
doc = (root / "docs" / "ARCHITECTURE.md").read_text()
folder_names = re.compile(r"`([a-z_]+)/`")

layers, allowed = {}, {}
for line in doc.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 4 or not cells[0].isdigit():
        continue
    folder = folder_names.fullmatch(cells[1])
    if not folder:
        continue
    name = folder.group(1)
    layers[name] = int(cells[0])
    may = cells[3]
    allowed[name] = None if may == "every folder above" else set(folder_names.findall(may))

errors = []
for name, deps in allowed.items():
    if deps is None:
        allowed[name] = {other for other, layer in layers.items() if layer < layers[name]}
        continue
    for dep in deps:
        if dep not in layers:
            errors.append(f"docs/ARCHITECTURE.md: {name}/ may include {dep}/, which the table does not list")
        elif layers[dep] >= layers[name]:
            errors.append(f"docs/ARCHITECTURE.md: {name}/ (layer {layers[name]}) may include {dep}/ "
                          f"(layer {layers[dep]}): only lower layers are allowed")

include = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.M)
checked = 0
for folder in sorted(p for p in (root / "src").iterdir() if p.is_dir()):
    name = folder.name
    if name not in layers:
        errors.append(f"src/{name}/ is not in docs/ARCHITECTURE.md's layer table")
        continue
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".cpp", ".hpp", ".h"):
            continue
        checked += 1
        for target in include.findall(path.read_text()):
            if target in (name, "stallwatch"):
                continue
            if target not in allowed[name]:
                errors.append(f"{path.relative_to(root)}: includes \"{target}/…\", but {name}/ "
                              f"(layer {layers[name]}) may include only "
                              f"{', '.join(sorted(d + '/' for d in allowed[name])) or 'nothing of src/'}")

if checked == 0:
    errors.append("no source file checked: is SOURCE_ROOT right?")
for e in errors:
    print(e, file=sys.stderr)
print(f"check-layers: {checked} files, {len(layers)} folders, {len(errors)} violations")
sys.exit(1 if errors else 0)
