"""Generates docs/guide/config-reference.md: every configuration key of ``conf/``, its default and its meaning.

    python docs/gen/config_reference.py           # (re)write the page
    python docs/gen/config_reference.py --check   # exit 1, with a diff, when the page is not what conf/ gives

The values and descriptions come from the YAML text under ``conf/`` (each key's trailing comment), read by the small
line-based parser below: it keeps values exactly as written (``1_000_000``, ``${env_name:${env.id}}``, ``???``), which a
YAML loader would not, and PyYAML then cross-checks what it read. The *allowed* column comes from the dataclass schema
in ``rlpipe/config.py`` (a field's ``Rule``, or its declared type where it has none). Nothing runs Hydra: a preset that
includes another is listed with the keys it sets itself.

Exit status: 0 written / up to date; 1 (``--check``) the page differs; 2 the parser met something it cannot
represent, or what it read disagrees with PyYAML (nothing is written then).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
PAGE = ROOT / "docs" / "guide" / "config-reference.md"
GENERATOR = "docs/gen/config_reference.py"

sys.path.insert(0, str(ROOT))
from rlpipe import config as schema  # noqa: E402  (omegaconf only: no torch)

# ------------------------------------------------------------------------------------------------------ YAML text


@dataclass
class Node:
    """One ``key: value  # comment`` line (value None: a mapping or a block list follows)."""

    key: str
    value: str | None
    comment: str
    line: int
    children: list[Node] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)


@dataclass
class Item:
    """One ``- text  # comment`` line of a block list (the ``defaults`` list)."""

    text: str
    comment: str
    line: int


@dataclass
class YamlFile:
    rel: str  # path relative to the repository root
    package: str | None  # from a leading ``# @package <name>`` line
    header: list[str]  # the leading comment block, without ``# ``
    nodes: list[Node]

    def get(self, key: str) -> Node | None:
        return next((n for n in self.nodes if n.key == key), None)

    @property
    def defaults(self) -> list[Item]:
        node = self.get("defaults")
        return node.items if node else []

    @property
    def body(self) -> list[Node]:
        return [n for n in self.nodes if n.key != "defaults"]


class ParseError(Exception):
    pass


_KEY = re.compile(r"^(?P<key>[^\s:#'\"\-\[{][^:]*?):(?:\s+(?P<value>.*))?$")


def split_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` -> (``value``, ``comment``): a ``#`` at the start or after whitespace, outside quotes."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip(), text[i + 1:].strip()
    return text.rstrip(), ""


def parse_yaml(path: Path) -> tuple[YamlFile, list[str]]:
    """Parses one file; returns it and the problems met (lines it cannot represent)."""
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    problems: list[str] = []
    package, header = None, []
    n = 0
    while n < len(lines) and lines[n].startswith("#"):
        text = lines[n][1:]
        text = text[1:] if text.startswith(" ") else text
        match = re.match(r"@package\s+(\S+)\s*$", text)
        if match and n == 0:
            package = match.group(1)
        else:
            header.append(text)
        n += 1

    root = Node("", None, "", 0)
    stack: list[tuple[int, Node]] = [(-1, root)]
    last: tuple[int, Node | Item] | None = None  # the line a comment-only line may continue
    for number, line in enumerate(lines[n:], start=n + 1):
        if not line.strip():
            last = None
            continue
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        where = f"{rel}:{number}"
        if stripped.startswith("\t"):
            problems.append(f"{where}: tab in the indentation")
            continue
        if stripped.startswith("#"):
            if last is not None and indent > last[0] and last[1].comment:
                last[1].comment += " " + stripped[1:].strip()  # a comment continued on the next line
            else:
                problems.append(f"{where}: comment line attached to no key: {stripped}")
            continue
        body, comment = split_comment(stripped)
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if body == "-" or body.startswith("- "):
            if parent is root or parent.value is not None or parent.children:
                problems.append(f"{where}: list item outside a block list: {body}")
                continue
            item = Item(body[1:].strip(), comment, number)
            parent.items.append(item)
            last = (indent, item)
            continue
        match = _KEY.match(body)
        if not match:
            problems.append(f"{where}: not a `key: value` line: {body}")
            continue
        if parent.items:
            problems.append(f"{where}: key inside a block list: {body}")
            continue
        node = Node(match.group("key").strip(), match.group("value"), comment, number)
        parent.children.append(node)
        if node.value is None:
            stack.append((indent, node))
        last = (indent, node)
    yaml_file = YamlFile(rel, package, header, root.children)
    problems += cross_check(yaml_file, path)
    return yaml_file, problems


def plain(nodes: list[Node]) -> dict[str, Any]:
    """What a YAML loader makes of the parsed lines (each value loaded on its own)."""
    tree: dict[str, Any] = {}
    for node in nodes:
        if node.items:
            tree[node.key] = [yaml.safe_load("- " + item.text)[0] for item in node.items]
        elif node.children:
            tree[node.key] = plain(node.children)
        elif node.value is None:
            tree[node.key] = None
        else:
            tree[node.key] = yaml.safe_load("v: " + node.value)["v"]
    return tree


def cross_check(yaml_file: YamlFile, path: Path) -> list[str]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        parsed = plain(yaml_file.nodes)
    except yaml.YAMLError as err:
        return [f"{yaml_file.rel}: PyYAML cannot read it: {err}"]
    if loaded != parsed:
        return [f"{yaml_file.rel}: the line parser reads {parsed!r}, PyYAML {loaded!r}"]
    return []


# ------------------------------------------------------------------------------------------------------ rows


@dataclass
class Row:
    key: list[str]  # path from the configuration's root
    value: str | None  # None: a section (a mapping key that carries a comment)
    comment: str


def rows(nodes: list[Node], prefix: list[str]) -> list[Row]:
    out: list[Row] = []
    for node in nodes:
        path = [*prefix, node.key]
        if node.children or node.items:
            if node.comment:
                out.append(Row(path, None, node.comment))
            if node.items:  # (a block list of values: not used outside the defaults lists)
                out.append(Row(path, "[" + ", ".join(i.text for i in node.items) + "]", node.comment))
            out += rows(node.children, path)
        else:
            out.append(Row(path, node.value if node.value is not None else "", node.comment))
    return out


def dotted(path: list[str]) -> str:
    """``["hydra", "sweeper", "params", "train.lr"]`` -> ``hydra.sweeper.params[train.lr]`` (OmegaConf's bracket form)."""
    text = ""
    for part in path:
        text += f"[{part}]" if "." in part else (f".{part}" if text else part)
    return text


# ------------------------------------------------------------------------------------------------------ schema


def type_text(tp: Any) -> str:
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        prefix = "null or " if len(args) < len(typing.get_args(tp)) else ""
        return prefix + " or ".join(type_text(a) for a in args)
    if typing.get_origin(tp) is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return {int: "a list of integers", float: "a list of numbers", str: "a list of strings"}.get(arg, "a list")
    if dataclasses.is_dataclass(tp):
        return "a section"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def field_allowed(cls: type, names: list[str]) -> str | None:
    """The allowed text of ``cls``'s field at ``names`` (nested sections followed); None when it has no such field."""
    hints = typing.get_type_hints(cls, vars(schema))
    spec = next((f for f in dataclasses.fields(cls) if f.name == names[0]), None)
    if spec is None:
        return None
    tp = hints[spec.name]
    if len(names) > 1:
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)] or [tp]
        return field_allowed(inner[0], names[1:]) if dataclasses.is_dataclass(inner[0]) else None
    rule = spec.metadata.get("rule")
    return rule.allowed if rule is not None else type_text(tp)


NO_SCHEMA = "—"
NOT_IN_SCHEMA = "*not in the schema*"


def allowed(path: list[str], kinds: dict[str, str]) -> str:
    """The schema's wording for the key at ``path``; ``kinds`` names the family of each family section that is known."""
    section = path[0]
    if len(path) == 1:
        return NO_SCHEMA
    if section in schema._SECTION_SCHEMAS:
        candidates = {section: schema._SECTION_SCHEMAS[section]}
    elif section in schema._FAMILY_SCHEMAS:
        families = schema._FAMILY_SCHEMAS[section]
        kind = kinds.get(section)
        candidates = {kind: families[kind]} if kind in families else dict(families)
    else:
        return NO_SCHEMA
    found = {family: text for family, cls in candidates.items() if (text := field_allowed(cls, path[1:])) is not None}
    if not found:
        return NOT_IN_SCHEMA
    texts = sorted(set(found.values()))
    if len(texts) == 1:
        return texts[0]
    return "; ".join(f"{section}.kind={family}: {text}" for family, text in found.items())


# ------------------------------------------------------------------------------------------------------ conf/


@dataclass
class Conf:
    primary: dict[str, YamlFile]  # conf/<name>.yaml
    groups: dict[str, dict[str, YamlFile]]  # group -> option -> file
    problems: list[str]

    def option(self, group: str, name: str) -> YamlFile | None:
        return self.groups.get(group, {}).get(name)


def read_conf() -> Conf:
    problems: list[str] = []

    def read(path: Path) -> YamlFile:
        yaml_file, found = parse_yaml(path)
        problems.extend(found)
        return yaml_file

    primary = {p.stem: read(p) for p in sorted(CONF.glob("*.yaml"))}
    groups = {
        folder.name: {p.stem: read(p) for p in sorted(folder.glob("*.yaml"))}
        for folder in sorted(CONF.iterdir())
        if folder.is_dir() and any(folder.glob("*.yaml"))
    }
    return Conf(primary, groups, problems)


def key_prefix(yaml_file: YamlFile, group: str | None) -> list[str]:
    """Where a file's keys land: a group file writes under its group's name unless it says ``@package _global_``."""
    if yaml_file.package == "_global_" or group is None:
        return []
    package = yaml_file.package or group
    return [p for p in package.replace("_group_", group).split(".") if p]


@dataclass
class Default:
    """One entry of a defaults list."""

    kind: str  # self | include | override | group | optional
    group: str
    option: str
    comment: str


def parse_default(item: Item) -> Default:
    text = item.text
    if text == "_self_":
        return Default("self", "", "", item.comment)
    if ":" not in text:
        return Default("include", "", text, item.comment)
    key, option = (part.strip() for part in text.split(":", 1))
    for word in ("override", "optional"):
        if key.startswith(word + " "):
            return Default(word, key[len(word) + 1:].strip().lstrip("/"), option, item.comment)
    return Default("group", key.lstrip("/"), option, item.comment)


def own_kinds(yaml_file: YamlFile, group: str | None) -> dict[str, str]:
    kinds = {}
    for row in rows(yaml_file.body, key_prefix(yaml_file, group)):
        if len(row.key) == 2 and row.key[1] == "kind" and row.key[0] in schema._FAMILY_SCHEMAS and row.value:
            kinds[row.key[0]] = str(yaml.safe_load(row.value))
    return kinds


def kinds_of(conf: Conf, yaml_file: YamlFile, group: str | None, seen: frozenset[str] = frozenset()) -> dict[str, str]:
    """The family (``kind``) of each family section that a file fixes: its own keys first, then the options its
    defaults list selects, then what the presets it includes or selects fix."""
    if yaml_file.rel in seen:
        return {}
    seen = seen | {yaml_file.rel}
    kinds = own_kinds(yaml_file, group)
    picked: list[tuple[str, YamlFile]] = []
    for default in map(parse_default, yaml_file.defaults):
        target_group = group if default.kind == "include" else default.group
        target = conf.option(target_group or "", default.option)
        if target is None:
            continue
        if default.kind == "override":
            for section, kind in own_kinds(target, target_group).items():
                kinds.setdefault(section, kind)
        picked.append((target_group, target))
    for target_group, target in picked:
        for section, kind in kinds_of(conf, target, target_group, seen).items():
            kinds.setdefault(section, kind)
    return kinds


def tuned_pair(conf: Conf, name: str) -> tuple[str, str] | None:
    """``doorkey_primitive_rnd`` -> (``doorkey_primitive``, ``rnd``): the env and exploration options it applies to."""
    for env in sorted(conf.groups.get("env", {}), key=len, reverse=True):
        rest = name[len(env) + 1:]
        if name.startswith(env + "_") and rest in conf.groups.get("exploration", {}):
            return env, rest
    return None


# ------------------------------------------------------------------------------------------------------ markdown


_EMPHASIS = re.compile(r"((?<![\w*\\])\*[^\s*][^*\n]*?(?<=[^\s*])\*(?![\w*]))")


def prose(text: str) -> str:
    """Markdown-safe prose outside code spans: a tag-like ``<``, a lone ``*`` and a word-edge ``_`` escaped."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts: outside backticks
        part = re.sub(r"&(?=#?\w+;)", "&amp;", parts[i])  # an entity-like text stays text
        part = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", part)  # <run dir> is no HTML tag
        part = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", part)
        pieces = _EMPHASIS.split(part)  # *word* stays emphasis; any other * is a literal star (T * decay, run-*)
        parts[i] = "".join(p if j % 2 else p.replace("*", r"\*") for j, p in enumerate(pieces))
    if len(parts) % 2 == 0:  # an unpaired backtick: leave it literal
        parts[-2] += "\\`" + parts.pop()
    return "`".join(parts)


def code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cell(text: str) -> str:
    return text.replace("|", r"\|")


def comment_blocks(lines: list[str], quote: bool = False) -> list[str]:
    """A leading comment block as markdown: prose lines joined into paragraphs, indented lines as a shell block."""
    out: list[str] = []
    para: list[str] = []
    shell: list[str] = []

    def flush() -> None:
        if para:
            text = prose(" ".join(para))
            out.extend([("> " if quote else "") + text, ""])
            para.clear()
        if shell:
            out.extend(["```sh", *shell, "```", ""])
            shell.clear()

    for line in lines:
        if line.startswith("  ") and line.strip():
            if para:
                flush()
            shell.append(line.strip())
        elif not line.strip():
            flush()
        else:
            if shell:
                flush()
            para.append(line.strip())
    flush()
    return out


def table(rows_: list[Row], kinds: dict[str, str] | None, value_header: str = "default") -> list[str]:
    """A markdown table; ``kinds`` None: no allowed column (keys the schema does not cover)."""
    header = ["key", value_header, "allowed", "description"] if kinds is not None else ["key", value_header, "description"]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows_:
        value = "*(section)*" if row.value is None else (code(row.value) if row.value else "*(empty: null)*")
        cells = [code(dotted(row.key)), value]
        if kinds is not None:
            cells.append("" if row.value is None else prose(allowed(row.key, kinds)))
        cells.append(prose(row.comment))
        out.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return out + [""]


def has_schema(rows_: list[Row]) -> bool:
    return any(r.key[0] in schema._SECTION_SCHEMAS or r.key[0] in schema._FAMILY_SCHEMAS for r in rows_)


# ------------------------------------------------------------------------------------------------------ the page


def render(conf: Conf) -> tuple[str, list[str]]:
    notes: list[str] = []
    base = conf.primary["config"]
    defaults = [parse_default(item) for item in base.defaults]
    out = [
        "# Configuration reference",
        "",
        f"<!-- Generated by `python {GENERATOR}` from `conf/` and `rlpipe/config.py`; do not edit. -->",
        "",
        "A run's configuration is composed by Hydra from `conf/config.yaml` and one option of each config group "
        "(a file `conf/<group>/<option>.yaml`). Pick options and override single keys on the command line:",
        "",
        "```sh",
        "python -m rlpipe.train group=option key=value",
        "python -m rlpipe.train env=lunarlander train.seed=1",
        "```",
        "",
        "In `conf/config.yaml`'s own words:",
        "",
        *comment_blocks(base.header, quote=True),
        "Keys are written below as full paths, as on the command line (`train.lr`, `env.noop_max`): a group's file writes "
        "under the group's name (`model/mlp.yaml`'s `hidden_sizes` is `model.hidden_sizes`), unless it begins with "
        "`# @package _global_`. Values are as written in the YAML: `1_000_000` is 1000000, `${...}` is an "
        "interpolation resolved when the run starts, `???` is a value that must be given. The *allowed* column is "
        "what `rlpipe/config.py` checks before a run starts: the key's rule, or its declared type where it has no rule "
        f"({NO_SCHEMA}: outside the schema).",
        "",
        "- [Groups and their defaults](#groups-and-their-defaults)",
        "- [Base sections](#base-sections)",
        "- [Group options](#group-options)",
    ]
    others = [name for name in conf.primary if name != "config"]
    if others:
        out.append("- [Other commands](#other-commands)")
    out += ["", "## Groups and their defaults", ""]
    self_first = bool(defaults) and defaults[0].kind == "self"
    out += [
        "`conf/config.yaml`'s defaults list, in order"
        + (" (`_self_` first: its own values are the base that every group may override)" if self_first else "")
        + ":",
        "",
        "| group | default | options | description |",
        "|---|---|---|---|",
    ]
    for d in defaults:
        if d.kind == "self":
            continue
        option = code(d.option) + (" (applied when the file exists)" if d.kind == "optional" else "")
        if d.option == "null":
            option = "`null` (none)"
        options = ", ".join(code(name) for name in conf.groups.get(d.group, {}))
        out.append("| " + " | ".join(cell(c) for c in [code(d.group), option, options, prose(d.comment)]) + " |")
    out.append("")

    # ---- base sections
    out += ["## Base sections", "", "The values of `conf/config.yaml` itself, before any group overrides them.", ""]
    top_level: list[Node] = []
    for node in base.body:
        if node.key == "hydra" or not node.children:
            if node.key != "hydra":
                top_level.append(node)
            continue
        out += [f"### {code(node.key)}", ""]
        if node.comment:
            out += [prose(node.comment), ""]
        out += table(rows(node.children, [node.key]), {})
    if top_level:
        out += ["### Top-level keys", ""]
        out += table(rows(top_level, []), {})
    hydra = base.get("hydra")
    if hydra is not None:
        out += ["### `hydra`", "", "Hydra's own settings: the run and sweep directories, and where the log goes.", ""]
        out += table(rows(hydra.children, ["hydra"]), None)

    # ---- group options
    out += ["## Group options", ""]
    order = [d.group for d in defaults if d.kind != "self" and d.group in conf.groups]
    order += [g for g in conf.groups if g not in order]
    default_of = {d.group: d.option for d in defaults if d.kind != "self"}
    for group in order:
        out += [f"### {code(group)}", ""]
        if group == "tuned":
            out += [
                "`tuned/<env>_<exploration>.yaml` applies by itself when its env and exploration options are "
                "chosen together (the `optional tuned` entry of the defaults list).",
                "",
            ]
        elif group in default_of:
            default = default_of[group]
            out += [f"Default: {'none' if default == 'null' else code(group + '=' + default)}.", ""]
        for name, yaml_file in conf.groups[group].items():
            title = f"tuned/{name}.yaml" if group == "tuned" else f"{group}={name}"
            out += [f"#### {code(title)}", ""]
            out += comment_blocks(yaml_file.header)
            facts = []
            parsed = [parse_default(item) for item in yaml_file.defaults]
            includes = [d.option for d in parsed if d.kind == "include"]
            if includes:
                facts.append(
                    "Includes " + ", ".join(code(f"{group}={i}") for i in includes)
                    + ": its keys apply too; only the keys this file sets itself are listed."
                )
            picks = [code(f"{d.group}={d.option}") for d in parsed if d.kind in ("override", "group")]
            if picks:
                facts.append("Selects " + ", ".join(picks) + ".")
            if group == "tuned":
                pair = tuned_pair(conf, name)
                if pair:
                    facts.append(f"Applies with {code(f'env={pair[0]} exploration={pair[1]}')}.")
                else:
                    notes.append(f"{yaml_file.rel}: no env and exploration option pair is named {name}")
            out += [" ".join(facts), ""] if facts else []
            found = rows(yaml_file.body, key_prefix(yaml_file, group))
            if not found:
                out += ["Sets no keys.", ""]
                continue
            kinds = kinds_of(conf, yaml_file, group)
            if group == "tuned" and (pair := tuned_pair(conf, name)):
                for target_group, option in zip(("env", "exploration"), pair):  # each names its own section's family
                    target = conf.option(target_group, option)
                    kind = kinds_of(conf, target, target_group).get(target_group) if target else None
                    if kind:
                        kinds.setdefault(target_group, kind)
            out += table(found, kinds if has_schema(found) else None, value_header="value")
            for row in found:
                if row.value is not None and has_schema([row]) and allowed(row.key, kinds) == NOT_IN_SCHEMA:
                    notes.append(f"{yaml_file.rel}: {dotted(row.key)} is not in rlpipe/config.py's schema")

    # ---- other primary configs
    if others:
        out += ["## Other commands", ""]
        for name in others:
            yaml_file = conf.primary[name]
            out += [f"### {code(f'conf/{name}.yaml')}", ""]
            out += comment_blocks(yaml_file.header)
            picks = [code(f"{d.group}={d.option}") for d in map(parse_default, yaml_file.defaults) if d.kind in ("override", "group")]
            if picks:
                out += ["Selects " + ", ".join(picks) + ".", ""]
            out += table(rows(yaml_file.body, []), None)

    out += ["---", "", f"Generated by `python {GENERATOR}` from `conf/` and `rlpipe/config.py`; do not edit.", ""]
    return "\n".join(out), notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the page on disk instead of writing it")
    args = parser.parse_args(argv)
    conf = read_conf()
    if conf.problems:
        for problem in conf.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    text, notes = render(conf)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    rel = PAGE.relative_to(ROOT).as_posix()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current == text:
            return 0
        diff = difflib.unified_diff(current.splitlines(keepends=True), text.splitlines(keepends=True),
                                    f"{rel} (on disk)", f"{rel} (generated)")
        sys.stdout.writelines(diff)
        print(f"{rel} is out of date: run python {GENERATOR}", file=sys.stderr)
        return 1
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    with PAGE.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
