#!/usr/bin/env python3
"""Generate crates/api/src/proto_table.txt: the protobuf field table skiff uses to decode
`application/vnd.kubernetes.protobuf` request bodies (kubectl 1.32+ typed commands send them).

Field numbers and wire types come from the `k8s-pb` crate's prost-generated structs (the
Kubernetes generated.proto files); JSON field names come from `k8s-openapi`'s serde code, matched
by struct and by the field name with case and punctuation removed (prost's snake_case loses the
original spelling: `podIP` becomes `pod_ip`). Run it after `cargo fetch` has both crates:

    python3 scripts/gen-proto-table.py > crates/api/src/proto_table.txt

Output lines: `M <message path>` starts a message, then `<tag> <json name> <o|r|m> <type>` per
field, where type is a scalar (string, int32, int64, bool, bytes, double), `.path` for a
message, or for maps `string,<value type>`.
"""
import glob
import os
import re
import sys

REG = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/"))
PB = next(d + "k8s-pb-0.9.0/src" for d in REG if os.path.isdir(d + "k8s-pb-0.9.0"))
OA = next(d + "k8s-openapi-0.29.0/src/v1_35" for d in REG if os.path.isdir(d + "k8s-openapi-0.29.0"))

MODULES = [
    "api/core/v1", "api/apps/v1", "api/batch/v1", "api/networking/v1", "api/discovery/v1",
    "api/coordination/v1", "api/rbac/v1", "api/events/v1", "api/policy/v1", "api/storage/v1",
    "api/autoscaling/v1", "api/autoscaling/v2", "api/authentication/v1",
    "api/authorization/v1", "api/scheduling/v1", "api/node/v1", "api/certificates/v1",
    "apimachinery/pkg/apis/meta/v1", "apimachinery/pkg/runtime",
    "apimachinery/pkg/util/intstr", "apimachinery/pkg/api/resource",
    "apiextensions_apiserver/pkg/apis/apiextensions/v1",
]


def norm(name):
    return re.sub(r"[^a-z0-9]", "", name.lower().removeprefix("r#"))


def openapi_names():
    """(module, Struct) -> {normalized: json name}, and a global fallback map."""
    per, glob_map = {}, {}
    for path in glob.glob(OA + "/**/*.rs", recursive=True):
        text = open(path).read()
        m = re.search(r"pub struct (\w+)", text)
        if not m:
            continue
        module = os.path.relpath(os.path.dirname(path), OA)
        names = {}
        for json in re.findall(r'"([^"]+)" => Field::Key_', text):
            names[norm(json)] = json
            glob_map.setdefault(norm(json), json)
        per[(module, norm(m.group(1)))] = (m.group(1), names)
    return per, glob_map


def camel(snake):
    parts = snake.removeprefix("r#").split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def resolve(module, rust_type, per):
    """A prost type path (relative, with super::) to a dotted message path, spelled as the
    Kubernetes type name (`HostIP`, not prost's `HostIp`)."""
    t = re.sub(r"::prost::alloc::vec::Vec<|::core::option::Option<|::prost::alloc::boxed::Box<|>", "", rust_type)
    parts = t.strip().split("::")
    base = module.split("/")
    while parts and parts[0] == "super":
        base = base[:-1]
        parts = parts[1:]
    target_module = "/".join(base + parts[:-1])
    name = per.get((target_module, norm(parts[-1])), (parts[-1], None))[0]
    return ".".join(base + parts[:-1] + [name])


def fields(body):
    """(attrs, name, type) for each prost field of a struct body; types may span lines."""
    for m in re.finditer(r"#\[prost\(([^)]*)\)\]\s*pub (r#\w+|\w+):", body):
        rest, depth, end = body[m.end():], 0, 0
        for i, c in enumerate(rest):
            if c == "<":
                depth += 1
            elif c == ">":
                depth -= 1
            elif c == "," and depth == 0:
                end = i
                break
        yield m.group(1), m.group(2), " ".join(rest[:end].split())


def main():
    per, glob_map = openapi_names()
    out = []
    for module in MODULES:
        text = open(f"{PB}/{module}/mod.rs").read()
        for sm in re.finditer(r"pub struct (\w+) \{(\}|\n.*?\n\})", text, re.S):
            struct, body = sm.group(1), sm.group(2)
            known = per.get((module, norm(struct)))
            names = known[1] if known else {}
            kube_name = known[0] if known else struct
            out.append(f"M {module.replace('/', '.')}.{kube_name}")
            for attrs, fname, ftype in fields(body):
                tag = re.search(r'tag = "(\d+)"', attrs).group(1)
                kind = attrs.split(",")[0].strip()
                if "map" in kind:
                    kind = attrs.split(", tag")[0]
                json = names.get(norm(fname))
                if json is None and known and kind == "message":
                    # Go embeds this struct (`json:",inline"`): its fields sit in the parent.
                    out.append(f"{tag} - i .{resolve(module, ftype, per)}")
                    continue
                json = json or glob_map.get(norm(fname)) or camel(fname)
                mm = re.match(r'(?:btree_)?map = "(\w+), (\w+)"', kind)
                if mm:
                    value = mm.group(2)
                    if value == "message":
                        inner = re.search(r",\s*([^>]+)>\s*$", ftype).group(1)
                        value = "." + resolve(module, inner, per)
                    out.append(f"{tag} {json} m {mm.group(1)},{value}")
                    continue
                card = "r" if "repeated" in attrs else "o"
                if kind == "message":
                    typ = "." + resolve(module, ftype, per)
                elif kind.startswith("bytes"):
                    typ = "bytes"
                else:
                    typ = kind
                out.append(f"{tag} {json} {card} {typ}")
    sys.stdout.write("\n".join(out) + "\n")


main()
