#!/usr/bin/env python3
"""Keeps policies/schema.json true (a ctest test).

  check_schema.py SYSVISOR SOURCE_DIR

- the schema accepts every tests/schema/valid/*.yaml and every shipped policy, and the loader
  (`sysvisor policy check`) accepts them too;
- the schema rejects every tests/schema/invalid/*.yaml, and so does the loader;
- at every level of the format, the schema's keys are the loader's keys (the loader lists its
  allowed keys when it meets an unknown one).
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml


def main():
    sysvisor, source = sys.argv[1], pathlib.Path(sys.argv[2])
    schema = json.loads((source / "policies" / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    failures = []

    def check(paths):
        r = subprocess.run([sysvisor, "policy", "check", "--json", *map(str, paths)], capture_output=True, text=True)
        return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}

    valid = sorted((source / "tests" / "schema" / "valid").glob("*.yaml"))
    shipped = sorted(p for p in (source / "policies").glob("*.yaml") if not p.name.endswith(".cases.yaml"))
    for path in valid + shipped:
        errors = sorted(validator.iter_errors(yaml.safe_load(path.read_text())), key=str)
        if errors:
            failures.append(f"{path}: the schema rejects a valid policy: {errors[0].message}")
    status, doc = check(valid)
    if status != 0:
        failures.append(f"the loader rejects the valid fixtures: {doc.get('errors')}")
    status, doc = check(shipped)
    if status != 0:
        failures.append(f"the loader rejects a shipped policy: {doc.get('errors')}")

    invalid = sorted((source / "tests" / "schema" / "invalid").glob("*.yaml"))
    if not invalid:
        failures.append("no invalid fixtures")
    for path in invalid:
        if validator.is_valid(yaml.safe_load(path.read_text())):
            failures.append(f"{path}: the schema accepts an invalid policy")
        status, _ = check([path])
        if status != 1:
            failures.append(f"{path}: the loader does not reject it (exit {status})")

    # Keys, level by level: a document with one unknown key at that level, and the loader's list.
    defs = schema["$defs"]
    levels = {
        "the policy": (schema, "name: k\nrules: []\nzz_unknown: 1\n"),
        "rule": (defs["rule"], "name: k\nrules:\n  - syscalls: [bpf]\n    action: deny\n    zz_unknown: 1\n"),
        "argument condition": (defs["arg"], "name: k\nrules:\n  - syscalls: [bpf]\n    action: deny\n"
                                            "    args: [{index: 0, op: eq, value: 1, zz_unknown: 1}]\n"),
        "`match`": (defs["match"], "name: k\nrules:\n  - syscalls: [mount]\n    action: deny\n"
                                   "    match: {zz_unknown: 1}\n"),
        "`flags`": (defs["match"]["properties"]["flags"],
                    "name: k\nrules:\n  - syscalls: [mount]\n    action: deny\n    match: {flags: {set: [MS_BIND], zz_unknown: 1}}\n"),
        "`emulate`": (defs["mountGrant"], "name: k\nrules:\n  - syscalls: [mount]\n    action: emulate\n"
                                          "    match: {fstype: [ext4]}\n    emulate: {zz_unknown: 1}\n"),
        "`bind` entry": (defs["bindGrant"], "name: k\nrules:\n  - syscalls: [mount]\n    action: emulate\n"
                                            "    emulate: {bind: [{host: /srv, zz_unknown: 1}]}\n"),
        "range": (defs["range"], "name: k\nrules:\n  - syscalls: [setpriority]\n    action: deny\n"
                                 "    match: {nice: {min: 1, zz_unknown: 1}}\n"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for level, (node, text) in levels.items():
            path = pathlib.Path(tmp) / "k.yaml"
            path.write_text(text)
            _, doc = check([path])
            messages = [e["message"] for e in doc.get("errors", []) if e["code"] == "unknown-key"]
            listed = None
            for m in messages:
                found = re.search(r"allowed keys: (.*)$", m)
                if found:
                    listed = {k.strip().strip("`") for k in found.group(1).split(",")}
            if listed is None:
                failures.append(f"{level}: the loader did not list its keys: {doc.get('errors')}")
                continue
            ours = set(node["properties"])
            if listed != ours:
                failures.append(f"{level}: loader keys {sorted(listed)} != schema keys {sorted(ours)}")

    for f in failures:
        print(f"check_schema: FAIL: {f}")
    print(f"check_schema: {len(valid)} valid, {len(shipped)} shipped, {len(invalid)} invalid fixtures, "
          f"{len(levels)} key levels: {'FAILED' if failures else 'ok'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
