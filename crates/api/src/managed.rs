//! Field ownership (`metadata.managedFields`) and server-side apply, after upstream's
//! structured-merge-diff.
//!
//! Every write records which manager set which fields. A field is named by a path of elements,
//! encoded as in `FieldsV1`: `f:<field>` for an object field, `k:{"name":"c"}` for the element
//! of a keyed list, `v:"x"` for a member of a set, `.` for the element itself. An *apply*
//! (`application/apply-patch+yaml`) declares the whole set of fields its manager wants: values
//! another manager owns and the apply would change are conflicts (409 unless forced), and
//! fields the manager applied before but no longer does are removed unless somebody else
//! owns them. Other writes (*updates*) take over the fields they change.
//!
//! List semantics come from the same table strategic merge uses ([`crate::strategic`]), with
//! upstream's apply keys where they differ (ports are keyed by port *and* protocol).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::strategic::{list_strategy, ListStrategy};

/// One path element, encoded as in `FieldsV1` (`f:spec`, `k:{"name":"c"}`, `v:"x"`).
pub type Element = String;
/// A field's path from the object root.
pub type Path = Vec<Element>;
/// A set of field paths.
pub type FieldSet = BTreeSet<Path>;

/// The identity of a `managedFields` entry: who, how, and through which subresource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Manager {
    pub name: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub subresource: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: Manager,
    pub api_version: String,
    pub time: Option<String>,
    pub fields: FieldSet,
}

/// Which part of an object a write covers: the main resource of a kind with a status
/// subresource leaves status alone, and a status write touches only status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole object (kinds without a status subresource).
    All,
    /// Everything but `status`.
    Main,
    /// `status` only.
    Status,
}

/// Metadata fields the server owns; never tracked.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// How the list at `field` (under `path`, field names only) is keyed for apply.
enum ListKind {
    Atomic,
    Map(&'static [&'static str]),
    Set,
}

fn list_kind(path: &[&str], field: &str) -> ListKind {
    let in_container = path
        .last()
        .is_some_and(|p| matches!(*p, "containers" | "initContainers" | "ephemeralContainers"));
    if field == "ports" && in_container {
        return ListKind::Map(&["containerPort", "protocol"]);
    }
    if field == "ports" && path == ["spec"] {
        return ListKind::Map(&["port", "protocol"]);
    }
    match list_strategy(path, field) {
        ListStrategy::MergeKey("name") => ListKind::Map(&["name"]),
        ListStrategy::MergeKey("mountPath") => ListKind::Map(&["mountPath"]),
        ListStrategy::MergeKey("devicePath") => ListKind::Map(&["devicePath"]),
        ListStrategy::MergeKey("type") => ListKind::Map(&["type"]),
        ListStrategy::MergeKey("uid") => ListKind::Map(&["uid"]),
        ListStrategy::MergeKey("ip") => ListKind::Map(&["ip"]),
        ListStrategy::MergeKey("topologyKey") => ListKind::Map(&["topologyKey"]),
        ListStrategy::MergeKey(_) => ListKind::Atomic,
        ListStrategy::MergePrimitives => ListKind::Set,
        ListStrategy::Replace => ListKind::Atomic,
    }
}

/// The key element of a keyed list item; missing `protocol` keys take their default.
fn item_key(item: &Value, keys: &[&str]) -> Option<Element> {
    let mut m = Map::new();
    for k in keys {
        match item.get(*k) {
            Some(v) if !v.is_null() => {
                m.insert((*k).to_string(), v.clone());
            }
            _ if *k == "protocol" => {
                m.insert("protocol".into(), json!("TCP"));
            }
            _ => return None,
        }
    }
    // serde_json's map keeps keys sorted, as upstream encodes them.
    Some(format!("k:{}", Value::Object(m)))
}

/// The set of fields an object sets, within `scope`.
pub fn fields_of(obj: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = obj.as_object() else {
        return out;
    };
    for (k, v) in m {
        let wanted = match (k.as_str(), scope) {
            ("apiVersion" | "kind", _) => false,
            ("status", Scope::Main) => false,
            ("status", Scope::Status) => true,
            (_, Scope::Status) => false,
            _ => true,
        };
        if !wanted || v.is_null() {
            continue;
        }
        let mut path = vec![format!("f:{k}")];
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for (mk, mv) in meta {
                    if SYSTEM_METADATA.contains(&mk.as_str()) || mv.is_null() {
                        continue;
                    }
                    path.push(format!("f:{mk}"));
                    walk(mv, &mut path, &mut vec!["metadata", mk], &mut out);
                    path.pop();
                }
            }
            continue;
        }
        walk(v, &mut path, &mut vec![k.as_str()], &mut out);
    }
    out
}

fn walk<'a>(v: &'a Value, path: &mut Path, names: &mut Vec<&'a str>, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                if child.is_null() {
                    continue;
                }
                path.push(format!("f:{k}"));
                names.push(k);
                walk(child, path, names, out);
                names.pop();
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let field = names.last().copied().unwrap_or("");
            let parents = &names[..names.len().saturating_sub(1)];
            match list_kind(parents, field) {
                ListKind::Map(keys) => {
                    for item in items {
                        let Some(key) = item_key(item, keys) else {
                            // An element without its key cannot be owned on its own.
                            out.insert(path.clone());
                            return;
                        };
                        path.push(key);
                        out.insert(with_dot(path));
                        walk(item, path, names, out);
                        path.pop();
                    }
                }
                ListKind::Set => {
                    for item in items {
                        path.push(format!("v:{item}"));
                        out.insert(path.clone());
                        path.pop();
                    }
                }
                ListKind::Atomic => {
                    out.insert(path.clone());
                }
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

fn with_dot(path: &Path) -> Path {
    let mut p = path.clone();
    p.push(".".into());
    p
}

/// The value a path names in an object, if it is there.
pub fn value_at<'a>(obj: &'a Value, path: &[Element]) -> Option<&'a Value> {
    let mut cur = obj;
    for el in path {
        if el == "." {
            return Some(cur);
        }
        cur = step(cur, el)?.1;
    }
    Some(cur)
}

/// One step down: the index (for list elements) and the value.
fn step<'a>(cur: &'a Value, el: &str) -> Option<(Option<usize>, &'a Value)> {
    if let Some(field) = el.strip_prefix("f:") {
        return cur.get(field).map(|v| (None, v));
    }
    let items = cur.as_array()?;
    if let Some(key) = el.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        return items.iter().enumerate().find_map(|(i, item)| {
            let matches = key.iter().all(|(k, want)| match item.get(k) {
                Some(v) => v == want,
                None => k == "protocol" && want == "TCP",
            });
            matches.then_some((Some(i), item))
        });
    }
    if let Some(member) = el.strip_prefix("v:") {
        let member: Value = serde_json::from_str(member).ok()?;
        return items
            .iter()
            .enumerate()
            .find(|(_, v)| **v == member)
            .map(|(i, v)| (Some(i), v));
    }
    None
}

/// Remove the field a path names (a whole element for `k:...`/`v:...` or `....`).
fn remove_at(obj: &mut Value, path: &[Element]) {
    let path: Vec<&Element> = path.iter().filter(|e| *e != ".").collect();
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for el in parents {
        let next = match step(cur, el) {
            Some((Some(i), _)) => cur.get_mut(i),
            Some((None, _)) => cur.get_mut(el.trim_start_matches("f:")),
            None => None,
        };
        let Some(next) = next else { return };
        cur = next;
    }
    match step(cur, last) {
        Some((Some(i), _)) => {
            if let Some(items) = cur.as_array_mut() {
                items.remove(i);
            }
        }
        Some((None, _)) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(last.trim_start_matches("f:"));
            }
        }
        None => {}
    }
}

/// `FieldsV1` JSON of a set.
pub fn encode(fields: &FieldSet) -> Value {
    #[derive(Default)]
    struct Node(BTreeMap<String, Node>);
    let mut root = Node::default();
    for path in fields {
        let mut n = &mut root;
        for el in path {
            n = n.0.entry(el.clone()).or_default();
        }
    }
    fn to_json(n: &Node) -> Value {
        Value::Object(n.0.iter().map(|(k, c)| (k.clone(), to_json(c))).collect())
    }
    to_json(&root)
}

/// A set from `FieldsV1` JSON.
pub fn decode(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn go(v: &Value, path: &mut Path, out: &mut FieldSet) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, c) in m {
                    path.push(k.clone());
                    go(c, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    go(v, &mut Vec::new(), &mut out);
    out
}

/// The `managedFields` entries of an object.
pub fn entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Some(Entry {
                manager: Manager {
                    name: s("manager"),
                    operation: s("operation"),
                    subresource: s("subresource"),
                },
                api_version: s("apiVersion"),
                time: e.get("time").and_then(Value::as_str).map(str::to_string),
                fields: decode(e.get("fieldsV1")?),
            })
        })
        .collect()
}

fn set_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), json!(e.manager.name));
            m.insert("operation".into(), json!(e.manager.operation));
            m.insert("apiVersion".into(), json!(e.api_version));
            if let Some(t) = &e.time {
                m.insert("time".into(), json!(t));
            }
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), encode(&e.fields));
            if !e.manager.subresource.is_empty() {
                m.insert("subresource".into(), json!(e.manager.subresource));
            }
            Value::Object(m)
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// What one write is: by whom, in which version, through which subresource, and when.
#[derive(Clone, Debug)]
pub struct Write<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub scope: Scope,
    pub time: &'a str,
}

/// The paths whose value differs between `old` and `new` (or exist in only one).
fn changed(old: &Value, new: &Value, scope: Scope) -> (FieldSet, FieldSet) {
    let old_set = fields_of(old, scope);
    let new_set = fields_of(new, scope);
    let changed = new_set
        .iter()
        .filter(|p| {
            p.last().is_some_and(|l| l != ".") && value_at(old, p) != value_at(new, p)
                || p.last().is_some_and(|l| l == ".") && value_at(old, p).is_none()
        })
        .cloned()
        .collect();
    let removed = old_set.difference(&new_set).cloned().collect();
    (changed, removed)
}

/// Record an update (create, PUT, a non-apply PATCH): the writer takes over every field it
/// changed, and nobody keeps a field that is gone. `old` is `None` for a create.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Write<'_>) {
    let mut all = old.map(entries).unwrap_or_default();
    let (changed, removed) = match old {
        Some(old) => changed(old, new, w.scope),
        // A create sets every field it has.
        None => (fields_of(new, w.scope), FieldSet::new()),
    };
    if changed.is_empty() && removed.is_empty() {
        set_entries(new, &all);
        return;
    }
    for e in &mut all {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    let me = Manager {
        name: w.manager.to_string(),
        operation: "Update".into(),
        subresource: w.subresource.to_string(),
    };
    match all.iter_mut().find(|e| e.manager == me) {
        Some(e) => {
            e.fields.extend(changed);
            e.api_version = w.api_version.to_string();
            e.time = Some(w.time.to_string());
        }
        None => all.push(Entry {
            manager: me,
            api_version: w.api_version.to_string(),
            time: Some(w.time.to_string()),
            fields: changed,
        }),
    }
    set_entries(new, &all);
}

/// A field another manager owns that an apply would change.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub manager: String,
    /// The field as upstream prints it: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="c"].image`.
    pub field: String,
}

/// How upstream names a manager in conflict messages.
fn describe(e: &Entry) -> String {
    let mut s = format!("{:?}", e.manager.name);
    if !e.manager.subresource.is_empty() {
        s = format!("{s} with subresource {:?}", e.manager.subresource);
    }
    if e.manager.operation == "Update" {
        s = format!("{s} using {}", e.api_version);
    }
    s
}

/// A path as upstream prints it.
pub fn path_string(path: &[Element]) -> String {
    let mut s = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// The `Apply failed with ...` message for a set of conflicts, worded as upstream.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager, c.field
        );
    }
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by_manager.entry(&c.manager).or_default().push(&c.field);
    }
    let mut lines = Vec::new();
    for (m, fields) in by_manager {
        lines.push(format!("conflicts with {m}:"));
        lines.extend(fields.iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Merge an applied configuration into the live object: maps recursively, keyed lists by
/// element, sets by member, anything else replaced.
pub fn merge(live: &Value, applied: &Value) -> Value {
    merge_at(live, applied, &mut Vec::new())
}

fn merge_at<'a>(live: &Value, applied: &'a Value, names: &mut Vec<&'a str>) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            let mut out = l.clone();
            for (k, av) in a {
                if av.is_null() {
                    out.remove(k);
                    continue;
                }
                names.push(k);
                let merged = match l.get(k) {
                    Some(lv) => merge_at(lv, av, names),
                    None => av.clone(),
                };
                names.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => {
            let field = names.last().copied().unwrap_or("");
            let parents = &names[..names.len().saturating_sub(1)];
            match list_kind(parents, field) {
                ListKind::Map(keys) => {
                    // Applied elements in their order, merged into the live ones; live
                    // elements the apply does not name keep their place after them.
                    let mut out = Vec::new();
                    let mut used = vec![false; l.len()];
                    for item in a {
                        let key = item_key(item, keys);
                        let found = key.as_ref().and_then(|k| {
                            l.iter()
                                .enumerate()
                                .find(|(i, li)| !used[*i] && item_key(li, keys).as_ref() == Some(k))
                        });
                        match found {
                            Some((i, li)) => {
                                used[i] = true;
                                out.push(merge_at(li, item, names));
                            }
                            None => out.push(item.clone()),
                        }
                    }
                    out.extend(
                        l.iter()
                            .enumerate()
                            .filter(|(i, _)| !used[*i])
                            .map(|(_, v)| v.clone()),
                    );
                    Value::Array(out)
                }
                ListKind::Set => {
                    let mut out = l.clone();
                    for v in a {
                        if !out.contains(v) {
                            out.push(v.clone());
                        }
                    }
                    Value::Array(out)
                }
                ListKind::Atomic => applied.clone(),
            }
        }
        _ => applied.clone(),
    }
}

/// Server-side apply of `applied` by `w.manager` onto `live` (`None`: the object does not
/// exist yet). Returns the new object with its `managedFields`, or the conflicts when `force`
/// is off and other managers own fields this apply would change.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    w: &Write<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let empty = json!({});
    let live_obj = live.unwrap_or(&empty);
    let mut all = entries(live_obj);
    let me = Manager {
        name: w.manager.to_string(),
        operation: "Apply".into(),
        subresource: w.subresource.to_string(),
    };
    let mut applied = applied.clone();
    if w.scope == Scope::Main {
        if let Some(m) = applied.as_object_mut() {
            m.remove("status");
        }
    }
    if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let mut merged = merge(live_obj, &applied);
    let new_set = fields_of(&applied, w.scope);

    let mut conflicts = Vec::new();
    let mut lost: Vec<(usize, Path)> = Vec::new();
    for (i, e) in all.iter().enumerate() {
        if e.manager == me {
            continue;
        }
        for p in e.fields.intersection(&new_set) {
            if p.last().is_some_and(|l| l == ".") {
                continue;
            }
            if value_at(live_obj, p) != value_at(&merged, p) {
                conflicts.push(Conflict {
                    manager: describe(e),
                    field: path_string(p),
                });
                lost.push((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for (i, p) in lost {
        all[i].fields.remove(&p);
    }

    // Fields this manager applied before and dropped now go, unless somebody else has them.
    let previous = all
        .iter()
        .find(|e| e.manager == me)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = all
        .iter()
        .filter(|e| e.manager != me)
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut dropped: Vec<&Path> = previous
        .iter()
        .filter(|p| !new_set.contains(*p) && !others.contains(*p))
        .collect();
    // Deepest first, so removing an element does not move the paths of the others.
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        // A keyed element goes only when nothing under it is still owned.
        if p.last().is_some_and(|l| l == ".") {
            let prefix = &p[..p.len() - 1];
            let still_owned = others
                .iter()
                .chain(new_set.iter())
                .any(|o| o.len() > prefix.len() && o.starts_with(prefix));
            if still_owned {
                continue;
            }
        }
        remove_at(&mut merged, p);
    }

    all.retain(|e| e.manager != me);
    all.insert(
        0,
        Entry {
            manager: me,
            api_version: w.api_version.to_string(),
            time: Some(w.time.to_string()),
            fields: new_set,
        },
    );
    set_entries(&mut merged, &all);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w<'a>(manager: &'a str) -> Write<'a> {
        Write {
            manager,
            api_version: "apps/v1",
            subresource: "",
            scope: Scope::Main,
            time: "2026-11-26T00:00:00Z",
        }
    }

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image,
                        "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn field_sets_encode_like_upstream() {
        let f = fields_of(&deploy(1, "nginx"), Scope::Main);
        let enc = encode(&f);
        assert_eq!(enc["f:metadata"], json!({"f:labels": {"f:app": {}}}));
        let c = &enc["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:image"], json!({}));
        assert_eq!(
            c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
            json!({".": {}, "f:containerPort": {}})
        );
        assert_eq!(decode(&enc), f);
    }

    #[test]
    fn apply_creates_then_conflicts_with_another_manager_until_forced() {
        let created = apply(None, &deploy(3, "nginx:1"), &w("alice"), false).unwrap();
        let e = entries(&created);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].manager.operation, "Apply");

        // Same values from another manager: shared ownership, no conflict.
        let shared = apply(Some(&created), &deploy(3, "nginx:1"), &w("bob"), false).unwrap();
        assert_eq!(entries(&shared).len(), 2);

        // A different value for a field alice owns conflicts.
        let err = apply(Some(&created), &deploy(5, "nginx:1"), &w("bob"), false).unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "\"alice\"".into(),
                field: ".spec.replicas".into()
            }]
        );
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
        );
        // Forcing takes the field over.
        let forced = apply(Some(&created), &deploy(5, "nginx:1"), &w("bob"), true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let alice = entries(&forced)
            .into_iter()
            .find(|e| e.manager.name == "alice")
            .unwrap();
        assert!(!alice
            .fields
            .contains(&vec!["f:spec".to_string(), "f:replicas".to_string()]));
    }

    #[test]
    fn fields_dropped_from_an_apply_are_removed_unless_owned_elsewhere() {
        let mut two = deploy(1, "nginx");
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "envoy"}));
        two["metadata"]["labels"]["tier"] = json!("fe");
        let live = apply(None, &two, &w("alice"), false).unwrap();
        let again = apply(Some(&live), &deploy(1, "nginx"), &w("alice"), false).unwrap();
        let containers = again["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1, "{again}");
        assert!(again["metadata"]["labels"].get("tier").is_none());

        // With another owner of the label, it stays.
        let mut live2 = live.clone();
        let upd = Write {
            manager: "kubectl-label",
            ..w("x")
        };
        let old = live2.clone();
        live2["metadata"]["labels"]["tier"] = json!("be");
        record_update(Some(&old), &mut live2, &upd);
        let again = apply(Some(&live2), &deploy(1, "nginx"), &w("alice"), false).unwrap();
        assert_eq!(again["metadata"]["labels"]["tier"], "be");
    }

    #[test]
    fn updates_take_over_changed_fields_and_conflict_later_applies() {
        let live = apply(None, &deploy(3, "nginx"), &w("alice"), false).unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(4);
        let scaler = Write {
            manager: "kubectl",
            subresource: "scale",
            ..w("x")
        };
        record_update(Some(&live), &mut scaled, &scaler);
        let e = entries(&scaled);
        let kubectl = e.iter().find(|e| e.manager.name == "kubectl").unwrap();
        assert_eq!(kubectl.manager.operation, "Update");
        assert_eq!(
            kubectl.fields,
            [vec!["f:spec".to_string(), "f:replicas".to_string()]].into()
        );
        let err = apply(Some(&scaled), &deploy(3, "nginx"), &w("alice"), false).unwrap_err();
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
        );
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let c = |m: &str, f: &str| Conflict {
            manager: m.into(),
            field: f.into(),
        };
        assert_eq!(
            conflict_message(&[
                c("\"b\"", ".spec.replicas"),
                c("\"a\" using v1", ".data.x"),
                c("\"b\"", ".spec.paused")
            ]),
            "Apply failed with 3 conflicts: conflicts with \"a\" using v1:\n- .data.x\nconflicts with \"b\":\n- .spec.replicas\n- .spec.paused"
        );
        assert_eq!(
            path_string(&[
                "f:spec".into(),
                "f:containers".into(),
                "k:{\"name\":\"c\"}".into(),
                "f:image".into()
            ]),
            ".spec.containers[name=\"c\"].image"
        );
    }

    #[test]
    fn sets_and_status_scope() {
        let obj = json!({"metadata": {"finalizers": ["a", "b"], "name": "x", "uid": "u"},
            "spec": {"x": 1}, "status": {"phase": "Running"}});
        let main = fields_of(&obj, Scope::Main);
        assert!(main.contains(&vec![
            "f:metadata".to_string(),
            "f:finalizers".to_string(),
            "v:\"a\"".to_string()
        ]));
        assert!(!main.iter().any(|p| p[0] == "f:status"));
        assert!(!main.iter().any(|p| p.len() > 1 && p[1] == "f:uid"));
        let status = fields_of(&obj, Scope::Status);
        assert_eq!(
            status,
            [vec!["f:status".to_string(), "f:phase".to_string()]].into()
        );
    }
}
