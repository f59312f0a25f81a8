#!/usr/bin/env python3
"""Offline checks of the Bicep templates under infra/, for tests/infra_bicep.rs.

No Bicep compiler can be installed from the package registries reachable here, so two independent
parsers from PyPI stand in for it (pinned in the test dependencies):
  * tree-sitter-bicep: the grammar used by editors; any ERROR or MISSING node fails the file;
  * pycep-parser: a Lark grammar that also gives the template's structure (params, vars, modules,
    resources), used for the cross-checks below.
A file passes only if both accept it. Neither knows the Azure resource types, so property names and
API versions are not checked here (see infra/README.md, "Not verified here").

Commands:
  syntax FILE...          parse every file with both parsers
  structure MAIN          modules exist, module params are declared in the module, required
                          module params are passed, main.parameters.json names declared params
  app-settings MAIN       print {"settings": {name: var}, ...} for the site's appsettings resource
"""

from __future__ import annotations

import json
import pathlib
import sys

INSTALL_HINT = "pip install pycep-parser==0.7.1 tree-sitter==0.26.1 tree-sitter-bicep==1.1.0"

try:
    import tree_sitter
    import tree_sitter_bicep
    from pycep import BicepParser
except ImportError as e:  # pragma: no cover - exercised by a missing install
    print(f"check_bicep: missing Python package ({e}); install with: {INSTALL_HINT}", file=sys.stderr)
    sys.exit(3)


def tree_sitter_errors(path: pathlib.Path) -> list[str]:
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
    tree = parser.parse(path.read_bytes())
    errors: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            line, col = node.start_point
            kind = "missing " + node.type if node.is_missing else "syntax error"
            text = node.text.decode(errors="replace")[:60] if node.text else ""
            errors.append(f"{path}:{line + 1}:{col + 1}: tree-sitter-bicep: {kind} near {text!r}")
        stack.extend(node.children)
    return sorted(errors)


def pycep_parse(path: pathlib.Path) -> dict:
    return BicepParser().parse(file_path=path)


def cmd_syntax(files: list[str]) -> int:
    failed = 0
    for name in files:
        path = pathlib.Path(name)
        errors = tree_sitter_errors(path)
        try:
            pycep_parse(path)
        except Exception as e:  # lark raises several exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            errors.append(f"{path}: pycep-parser: {first}")
        if errors:
            failed += 1
            print("\n".join(errors), file=sys.stderr)
        else:
            print(f"ok {path}")
    return 1 if failed else 0


def cmd_structure(main: str) -> int:
    main_path = pathlib.Path(main)
    problems: list[str] = []
    tmpl = pycep_parse(main_path)
    for mod_name, mod in (tmpl.get("modules") or {}).items():
        rel = mod["detail"]["path"]
        mod_path = main_path.parent / rel
        if not mod_path.is_file():
            problems.append(f"module {mod_name}: {rel} does not exist")
            continue
        declared = pycep_parse(mod_path).get("parameters") or {}
        body = mod["config"]
        if "condition" in body and "config" in body:
            body = body["config"]
        passed = set((body.get("params") or {}).keys())
        for p in sorted(passed - set(declared)):
            problems.append(f"module {mod_name} ({rel}): passes {p!r}, which the module does not declare")
        for p, spec in sorted(declared.items()):
            if "default" not in spec and p not in passed:
                problems.append(f"module {mod_name} ({rel}): required param {p!r} is not passed")
    params_file = main_path.with_name(main_path.stem + ".parameters.json")
    if params_file.is_file():
        declared = tmpl.get("parameters") or {}
        doc = json.loads(params_file.read_text())
        for p in sorted((doc.get("parameters") or {}).keys()):
            if p not in declared:
                problems.append(f"{params_file.name}: {p!r} is not a parameter of {main_path.name}")
        for p, spec in sorted(declared.items()):
            if "default" not in spec and p not in (doc.get("parameters") or {}):
                problems.append(f"{params_file.name}: required parameter {p!r} has no value")
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"ok structure of {main_path}")
    return 1 if problems else 0


def _objects_of(value, variables: dict, seen: set[str]) -> list[tuple[str, dict]]:
    """Object literals an appsettings expression can produce, each with the var it came from."""
    if isinstance(value, str):
        if value in variables and value not in seen:
            inner = variables[value]["value"]
            if isinstance(inner, dict) and "function" not in inner and "operator" not in inner:
                return [(value, inner)]
            return _objects_of(inner, variables, seen | {value})
        return []
    if not isinstance(value, dict):
        return []
    if "function" in value and value["function"].get("type") == "union":
        out = []
        for arg in value["function"]["parameters"].values():
            out.extend(_objects_of(arg, variables, seen))
        return out
    if "operator" in value and value["operator"].get("type") == "conditional":
        ops = value["operator"]["operands"]
        return _objects_of(ops["true_value"], variables, seen) + _objects_of(ops["false_value"], variables, seen)
    if "function" in value or "operator" in value:
        raise ValueError(f"appsettings: cannot follow expression {json.dumps(value, default=str)[:120]}")
    return [("<literal>", value)]


def cmd_app_settings(main: str) -> int:
    tmpl = pycep_parse(pathlib.Path(main))
    variables = tmpl.get("variables") or {}
    found = [
        res for res in (tmpl.get("resources") or {}).values()
        if res["type"] == "Microsoft.Web/sites/config" and res["config"].get("name") == "appsettings"
    ]
    if len(found) != 1:
        print(f"expected one Microsoft.Web/sites/config 'appsettings' resource, found {len(found)}", file=sys.stderr)
        return 1
    settings: dict[str, str] = {}
    for var, obj in _objects_of(found[0]["config"]["properties"], variables, set()):
        for key in obj:
            settings[key] = var
    print(json.dumps({"settings": settings}, indent=1, sort_keys=True))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "syntax":
        return cmd_syntax(args)
    if cmd == "structure" and len(args) == 1:
        return cmd_structure(args[0])
    if cmd == "app-settings" and len(args) == 1:
        return cmd_app_settings(args[0])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
