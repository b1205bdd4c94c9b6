#!/usr/bin/env python3
"""Every module a target imports is one it declares (issue 21): a target that compiles only because
another target happens to link the module breaks when that one changes. Reads the package from
`swift package dump-package`; system modules (Glibc, Foundation, Testing, ...) need no declaration.
Exit 1 with the list of undeclared imports."""
import json
import os
import re
import subprocess
import sys

SYSTEM = {"Glibc", "Synchronization", "Foundation", "FoundationEssentials", "Testing", "Dispatch", "XCTest", "_Concurrency", "PackageDescription"}
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
package = json.loads(subprocess.run(["swift", "package", "dump-package"], cwd=root, capture_output=True, text=True, check=True).stdout)
products = {}  # product name -> modules it brings (a product of another package: its own name)
problems = []
pattern = re.compile(r"^\s*(?:@testable\s+|@preconcurrency\s+|public\s+|internal\s+|package\s+|private\s+|fileprivate\s+)*import\s+(?:struct\s+|class\s+|enum\s+|func\s+)?(\w+)", re.M)
checked = 0
for target in package["targets"]:
    name = target["name"]
    declared = set()
    for dep in target["dependencies"]:
        for kind in ("byName", "target", "product"):
            if kind in dep:
                declared.add(dep[kind][0])
    path = target.get("path") or os.path.join("Tests" if target["type"] == "test" else "Sources", name)
    directory = os.path.join(root, path)
    if not os.path.isdir(directory):
        continue
    for base, _, files in os.walk(directory):
        for f in files:
            if not f.endswith(".swift"):
                continue
            text = open(os.path.join(base, f), encoding="utf-8").read()
            for module in pattern.findall(text):
                checked += 1
                if module in SYSTEM or module == name or module in declared:
                    continue
                problems.append(f"{os.path.relpath(os.path.join(base, f), root)}: imports {module}, which target {name} does not declare")
if problems:
    print("undeclared imports:\n  " + "\n  ".join(sorted(set(problems))))
    sys.exit(1)
print(f"imports: {checked} import lines in {len(package['targets'])} targets, every module declared by its target")
