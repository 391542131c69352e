//! The generic registry: one implementation of create, get, list, watch, update, patch and
//! delete for every resource, with per-resource behaviour in a [`strategy::Strategy`], like
//! upstream's `genericregistry.Store` with `pkg/registry/<group>/<resource>/strategy.go`.

pub mod alloc;
pub mod eviction;
pub mod object;
pub mod strategy;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::fields::FieldSelector;
use skiff_api::managed;
use skiff_api::resources::ResourceInfo;
use skiff_api::selector::LabelSelector;
use skiff_api::status::{FieldError, StatusError};
use skiff_store::{ListOptions, Revision, Storage};

use crate::watchcache::{decode, CachedObject, WatchCache};
use object::*;
use strategy::Strategy;

pub type Result<T, E = StatusError> = std::result::Result<T, E>;

/// Per-request options that change how a write behaves.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run everything but the store write.
    pub dry_run: bool,
    /// Who is writing, for `managedFields` (`fieldManager`, else from the User-Agent).
    pub field_manager: Option<String>,
    /// `force=true` on a server-side apply: take over conflicting fields.
    pub force: bool,
    /// Set inside [`Registry::apply`]: the apply records field ownership itself.
    pub(crate) apply: bool,
}

/// A custom object against its CRD's structural schema: unknown fields pruned, defaults
/// filled in, then validated.
fn custom_schema(info: &ResourceInfo, obj: &mut Value) -> Vec<FieldError> {
    match (&info.custom, &info.schema) {
        (Some(_), Some(schema)) => {
            skiff_api::crd::prune(schema, obj);
            skiff_api::crd::apply_defaults(schema, obj);
            skiff_api::crd::validate(schema, obj)
        }
        _ => Vec::new(),
    }
}

/// Record the fields a write changed under its manager (`managedFields`).
pub(crate) fn track(
    info: &ResourceInfo,
    opts: &WriteOptions,
    subresource: &str,
    old: Option<&Value>,
    new: &mut Value,
) {
    // A client that names itself neither way is still recorded, as upstream does, so the
    // fields it changes stop belonging to whoever set them before.
    let manager = opts.field_manager.as_deref().unwrap_or("");
    let time = now_rfc3339();
    let api_version = info.api_version();
    let write = managed::Write {
        manager,
        api_version: &api_version,
        subresource,
        scope: scope(info, subresource),
        time: &time,
    };
    managed::record_update(old, new, &write);
}

fn scope(info: &ResourceInfo, subresource: &str) -> managed::Scope {
    match subresource {
        "status" => managed::Scope::Status,
        _ if info.subresource("status").is_some() => managed::Scope::Main,
        _ => managed::Scope::All,
    }
}

/// `DeleteOptions` as far as the registry uses them.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Read a `DeleteOptions` body (possibly empty) merged with query parameters.
    pub fn from_request(body: &Value, query: &crate::request::Query) -> Result<Self> {
        let mut o = DeleteOptions {
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation_policy: body
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_uid: body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_rv: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            dry_run: dry_run_of(body.get("dryRun"))?,
        };
        if let Some(g) = query.get("gracePeriodSeconds") {
            o.grace_period_seconds = Some(
                g.parse()
                    .map_err(|_| StatusError::bad_request("invalid gracePeriodSeconds"))?,
            );
        }
        if let Some(p) = query.get("propagationPolicy") {
            o.propagation_policy = Some(p.to_string());
        }
        if query.get("orphanDependents") == Some("true") {
            o.propagation_policy = Some("Orphan".into());
        }
        if let Some(d) = query.get("dryRun") {
            o.dry_run |= parse_dry_run(&[d])?;
        }
        if let Some(p) = &o.propagation_policy {
            if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
                return Err(StatusError::invalid(
                    "",
                    "DeleteOptions",
                    "",
                    &[FieldError::not_supported(
                        "propagationPolicy",
                        json!(p),
                        &["Foreground", "Background", "Orphan", "nil"],
                    )],
                ));
            }
        }
        Ok(o)
    }
}

fn dry_run_of(v: Option<&Value>) -> Result<bool> {
    let list: Vec<&str> = v
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    parse_dry_run(&list)
}

/// `dryRun` accepts only `All`.
pub fn parse_dry_run(values: &[&str]) -> Result<bool> {
    for v in values {
        if *v != "All" {
            return Err(StatusError::bad_request(format!(
                "Invalid dry run argument: {v:?}; the only supported value is \"All\""
            )));
        }
    }
    Ok(!values.is_empty())
}

/// What a list asks for.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    pub namespace: Option<String>,
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// A list's result, items as the cache holds them (JSON with resourceVersion set).
pub struct ListResponse {
    pub items: Vec<Arc<CachedObject>>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// The registry: the served resources and the machinery to store them.
pub struct Registry {
    resources: RwLock<Vec<Arc<ResourceInfo>>>,
    pub store: Arc<dyn Storage>,
    pub cache: Arc<WatchCache>,
    pub alloc: alloc::Allocator,
}

impl Registry {
    pub fn new(store: Arc<dyn Storage>, cache: Arc<WatchCache>, alloc: alloc::Allocator) -> Self {
        Registry {
            resources: RwLock::new(
                skiff_api::resources::builtin()
                    .into_iter()
                    .map(Arc::new)
                    .collect(),
            ),
            store,
            cache,
            alloc,
        }
    }

    /// Every served resource, in discovery order.
    pub fn resources(&self) -> Vec<Arc<ResourceInfo>> {
        self.resources.read().unwrap().clone()
    }

    /// Pod priority admission, as upstream's `Priority` plugin: a pod's `priorityClassName`
    /// (or the global default class) decides its `priority` and `preemptionPolicy`.
    fn admit_priority(&self, pod: &mut Value) -> Result<()> {
        const PREFIX: &str = "/registry/scheduling.k8s.io/priorityclasses/";
        let pod_name = name(pod).unwrap_or("").to_string();
        let requested = pod
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let class = match &requested {
            Some(n) => match self.cache.get(&format!("{PREFIX}{n}")) {
                Some(o) => o.value(),
                None => {
                    return Err(StatusError::forbidden(format!(
                        "pods \"{pod_name}\" is forbidden: no PriorityClass with name {n} was found"
                    )))
                }
            },
            None => {
                let (items, _, _) = self.cache.list(PREFIX, None, 0, &|o| {
                    o.value().get("globalDefault").and_then(Value::as_bool) == Some(true)
                });
                // With several global defaults, the lowest value wins, as upstream.
                match items
                    .iter()
                    .map(|o| o.value())
                    .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
                {
                    Some(c) => c,
                    None => return Ok(()),
                }
            }
        };
        let value = class.get("value").and_then(Value::as_i64).unwrap_or(0);
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
            if given != value {
                return Err(StatusError::forbidden(format!(
                    "pods \"{pod_name}\" is forbidden: the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
                )));
            }
        }
        if requested.is_none() {
            if let Some(n) = class.pointer("/metadata/name") {
                spec.insert("priorityClassName".into(), n.clone());
            }
        }
        spec.insert("priority".into(), json!(value));
        if !spec.contains_key("preemptionPolicy") {
            let policy = class
                .get("preemptionPolicy")
                .cloned()
                .unwrap_or(json!("PreemptLowerPriority"));
            spec.insert("preemptionPolicy".into(), policy);
        }
        Ok(())
    }

    /// Serve a CRD's resources (one per served version), replacing what it served before.
    pub fn register_custom(&self, group: &str, plural: &str, infos: Vec<ResourceInfo>) {
        let mut all = self.resources.write().unwrap();
        let fresh: Vec<Arc<ResourceInfo>> = infos.into_iter().map(Arc::new).collect();
        let same =
            |r: &Arc<ResourceInfo>| r.custom.is_some() && r.group == group && r.plural == plural;
        let current: Vec<&Arc<ResourceInfo>> = all.iter().filter(|r| same(r)).collect();
        if current.len() == fresh.len() && current.iter().zip(&fresh).all(|(a, b)| ***a == **b) {
            return;
        }
        all.retain(|r| !same(r));
        all.extend(fresh);
    }

    /// Stop serving a CRD's resources.
    pub fn unregister_custom(&self, group: &str, plural: &str) {
        self.resources
            .write()
            .unwrap()
            .retain(|r| !(r.custom.is_some() && r.group == group && r.plural == plural));
    }

    /// The resource served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.resources
            .read()
            .unwrap()
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// The resource for a kind (used for internal writes).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.resources
            .read()
            .unwrap()
            .iter()
            .find(|r| r.group == group && r.kind == kind && r.stored_as.is_none())
            .cloned()
    }

    fn strategy(&self, info: &ResourceInfo) -> &'static dyn Strategy {
        strategy::for_resource(&info.group, &info.plural)
    }

    // ---------------------------------------------------------------- reads

    /// One object, consistent with every write acknowledged before the call.
    pub async fn get(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value> {
        let key = info.key(ns, name);
        match self.store.get(&key).await.map_err(store_err)? {
            Some(kv) => {
                let o = decode(&kv.key, &kv.value, kv.mod_revision)
                    .ok_or_else(|| StatusError::internal("stored object is not valid JSON"))?;
                Ok(self.present(info, o.value()))
            }
            None => Err(not_found(info, name)),
        }
    }

    /// Present a stored object as this resource's version (apiVersion/kind).
    pub fn present(&self, info: &ResourceInfo, mut v: Value) -> Value {
        if info.stored_as.is_some() {
            v = skiff_api::convert::to_external(&info.group, &info.version, &info.kind, v);
        }
        if let Some(m) = v.as_object_mut() {
            m.insert("apiVersion".into(), json!(info.api_version()));
            m.insert("kind".into(), json!(info.kind));
        }
        v
    }

    /// A client's object in the version this resource is stored as.
    fn to_storage(&self, info: &ResourceInfo, v: Value) -> Value {
        if info.stored_as.is_some() {
            skiff_api::convert::to_storage(&info.group, &info.version, &info.kind, v)
        } else {
            v
        }
    }

    /// A list, served from the watch cache when it can be, from the store otherwise.
    pub async fn list(&self, info: &ResourceInfo, req: &ListRequest) -> Result<ListResponse> {
        let prefix = match (&req.namespace, info.namespaced()) {
            (Some(ns), true) => format!("{}{ns}/", info.key_prefix()),
            _ => info.key_prefix(),
        };
        let keep = |o: &CachedObject| self.matches(info, req, o);
        let token = req
            .continue_token
            .as_deref()
            .map(decode_continue)
            .transpose()?;
        if let Some((rev, start_after)) = token {
            // Later pages are read at the first page's revision: from the cache if it has not
            // moved since, else from the store's history.
            if self.cache.revision() == rev {
                let (items, r, more) =
                    self.cache
                        .list(&prefix, Some(&start_after), req.limit, &keep);
                if r == rev {
                    return Ok(page(items, rev, more));
                }
            }
            return self
                .list_from_store(info, req, &prefix, rev, Some(start_after))
                .await;
        }
        match (
            req.resource_version.as_deref(),
            req.resource_version_match.as_deref(),
        ) {
            (Some(rv), Some("Exact")) => {
                let rev = parse_rv(rv)?;
                self.list_from_store(info, req, &prefix, rev, None).await
            }
            (None, _) | (Some(""), _) => {
                // A consistent read: wait for the cache to catch up with the store.
                self.cache.sync().await.map_err(cache_err)?;
                let (items, rev, more) = self.cache.list(&prefix, None, req.limit, &keep);
                Ok(page(items, rev, more))
            }
            (Some("0"), _) => {
                let (items, rev, more) = self.cache.list(&prefix, None, req.limit, &keep);
                Ok(page(items, rev, more))
            }
            (Some(rv), _) => {
                let rev = parse_rv(rv)?;
                self.cache
                    .wait_for(rev, Duration::from_secs(3))
                    .await
                    .map_err(cache_err)?;
                let (items, rev, more) = self.cache.list(&prefix, None, req.limit, &keep);
                Ok(page(items, rev, more))
            }
        }
    }

    async fn list_from_store(
        &self,
        info: &ResourceInfo,
        req: &ListRequest,
        prefix: &str,
        rev: Revision,
        mut start_after: Option<String>,
    ) -> Result<ListResponse> {
        let mut items = Vec::new();
        let chunk = req.limit.clamp(100, 1000);
        loop {
            let res = self
                .store
                .list(
                    prefix,
                    ListOptions {
                        start_after: start_after.clone(),
                        limit: chunk,
                        revision: rev,
                    },
                )
                .await
                .map_err(|e| match e {
                    skiff_store::Error::Compacted { .. } => StatusError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ),
                    other => store_err(other),
                })?;
            for kv in &res.items {
                start_after = Some(kv.key.clone());
                if let Some(o) = decode(&kv.key, &kv.value, kv.mod_revision) {
                    if self.matches(info, req, &o) {
                        if req.limit > 0 && items.len() == req.limit {
                            let last: &Arc<CachedObject> = items.last().unwrap();
                            let key = last.key.clone();
                            return Ok(ListResponse {
                                items,
                                revision: res.revision,
                                continue_token: Some(encode_continue(res.revision, &key)),
                                remaining: None,
                            });
                        }
                        items.push(Arc::new(o));
                    }
                }
            }
            if !res.more {
                return Ok(ListResponse {
                    items,
                    revision: res.revision,
                    continue_token: None,
                    remaining: None,
                });
            }
        }
    }

    /// Whether a cached object passes a list's selectors.
    pub fn matches(&self, info: &ResourceInfo, req: &ListRequest, o: &CachedObject) -> bool {
        if let Some(ls) = &req.label_selector {
            if !ls.matches(&o.labels) {
                return false;
            }
        }
        if let Some(fs) = &req.field_selector {
            if !fs.matches(&info.group, &info.plural, &o.value()) {
                return false;
            }
        }
        true
    }

    // ---------------------------------------------------------------- writes

    /// The stored key and its object, for a read-modify-write.
    async fn load(
        &self,
        info: &ResourceInfo,
        key: &str,
        name_: &str,
    ) -> Result<(skiff_store::KeyValue, Value)> {
        let kv = self
            .store
            .get(key)
            .await
            .map_err(store_err)?
            .ok_or_else(|| not_found(info, name_))?;
        let cur = decode(&kv.key, &kv.value, kv.mod_revision)
            .ok_or_else(|| StatusError::internal("stored object is not valid JSON"))?
            .value();
        Ok((kv, cur))
    }

    /// Ensure a namespace exists and accepts new objects.
    async fn check_namespace(&self, ns: &str) -> Result<()> {
        let key = format!("/registry/core/namespaces/{ns}");
        let obj = match self.cache.get(&key) {
            Some(o) => o.value(),
            None => match self.store.get(&key).await.map_err(store_err)? {
                Some(kv) => serde_json::from_slice(&kv.value).unwrap_or(Value::Null),
                None => return Err(StatusError::not_found("", "namespaces", ns)),
            },
        };
        if is_deleting(&obj) {
            let mut e = StatusError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ));
            e.details = Some(json!({
                "name": ns, "kind": "namespaces",
                "causes": [{"reason": "NamespaceTerminating",
                            "message": format!("namespace {ns} is being terminated"),
                            "field": "metadata.namespace"}]
            }));
            return Err(e);
        }
        Ok(())
    }

    /// Create an object. `ns` is the namespace from the URL (namespaced resources).
    pub async fn create(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value> {
        check_type(info, &obj)?;
        let mut obj = self.to_storage(info, obj);
        let ns = if info.namespaced() {
            let ns = ns.ok_or_else(|| StatusError::bad_request("namespace is required"))?;
            if let Some(body_ns) = namespace(&obj) {
                if body_ns != ns {
                    return Err(StatusError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
            meta_mut(&mut obj).insert("namespace".into(), json!(ns));
            Some(ns)
        } else {
            meta_mut(&mut obj).remove("namespace");
            None
        };
        if name(&obj).is_none() {
            if let Some(base) = meta_str(&obj, "generateName").map(str::to_string) {
                meta_mut(&mut obj).insert("name".into(), json!(generate_name(&base)));
            }
        }
        {
            let m = meta_mut(&mut obj);
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            for f in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(f);
            }
        }
        let strat = self.strategy(info);
        let has_status = info.subresource("status").is_some();
        // Custom objects always count generations, as upstream.
        if (has_status && obj.get("spec").is_some()) || info.custom.is_some() {
            meta_mut(&mut obj).insert("generation".into(), json!(1));
        } else {
            meta_mut(&mut obj).remove("generation");
        }
        if info.group.is_empty() && info.plural == "pods" {
            if let Err(e) = self.admit_priority(&mut obj) {
                // A class created a moment ago may not be in the cache yet: look again once
                // the cache has every acknowledged write.
                let _ = self.cache.sync().await;
                self.admit_priority(&mut obj).map_err(|_| e)?;
            }
        }
        strat.prepare_create(&mut obj);
        if has_status && info.custom.is_some() {
            // The status subresource owns status: a create cannot set it.
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        skiff_api::defaults::apply_defaults(&info.group, &info.plural, &mut obj);
        let mut errs = skiff_api::validation::validate_create(&info.group, &info.plural, &obj);
        errs.extend(custom_schema(info, &mut obj));
        errs.extend(strat.validate_create(&obj));
        let obj_name = name(&obj).unwrap_or("").to_string();
        if !errs.is_empty() {
            return Err(StatusError::invalid(
                &info.group,
                &info.kind,
                &obj_name,
                &errs,
            ));
        }
        if let Some(ns) = ns {
            self.check_namespace(ns).await?;
        }
        let key = info.key(ns, &obj_name);
        if opts.dry_run {
            if self.store.get(&key).await.map_err(store_err)?.is_some() {
                return Err(StatusError::already_exists(
                    &info.group,
                    &info.plural,
                    &obj_name,
                ));
            }
        }
        if info.group.is_empty() && info.plural == "services" {
            // Allocation reads the Services in the cache: let it see every write acknowledged
            // so far, so an address released by a delete just before is free again.
            let _ = self.cache.sync().await;
        }
        strat.allocate(self, &mut obj, None, opts.dry_run)?;
        if !opts.apply {
            meta_mut(&mut obj).remove("managedFields");
            track(info, opts, "", None, &mut obj);
        }
        if opts.dry_run {
            return Ok(self.present(info, obj));
        }
        match self.store.create(&key, encode_for_store(&obj).into()).await {
            Ok(rev) => {
                set_resource_version(&mut obj, rev);
                Ok(self.present(info, obj))
            }
            Err(skiff_store::Error::AlreadyExists(_)) => Err(StatusError::already_exists(
                &info.group,
                &info.plural,
                &obj_name,
            )),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Read-modify-write with compare-and-swap, retried on conflicts unless the caller gave a
    /// resourceVersion precondition. `change` gets the current object and returns the new one.
    pub async fn guaranteed_update<F>(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name_: &str,
        precondition_rv: Option<&str>,
        opts: &WriteOptions,
        change: F,
    ) -> Result<Value>
    where
        F: Fn(&Value) -> Result<Value>,
    {
        let key = info.key(ns, name_);
        let precondition = match precondition_rv {
            Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
            _ => None,
        };
        for _attempt in 0..64 {
            let (kv, cur) = self.load(info, &key, name_).await?;
            if let Some(p) = precondition {
                if p != kv.mod_revision {
                    return Err(StatusError::conflict(&info.group, &info.plural, name_));
                }
            }
            let mut new = change(&cur)?;
            // What a client cannot change through any write.
            {
                let old_meta = meta(&cur).cloned().unwrap_or_default();
                let m = meta_mut(&mut new);
                for f in ["uid", "creationTimestamp", "deletionTimestamp", "namespace"] {
                    match old_meta.get(f) {
                        Some(v) => {
                            m.insert(f.into(), v.clone());
                        }
                        None => {
                            m.remove(f);
                        }
                    }
                }
                if let Some(g) = old_meta.get("deletionGracePeriodSeconds") {
                    m.insert("deletionGracePeriodSeconds".into(), g.clone());
                }
                m.insert("name".into(), json!(name_));
            }
            set_resource_version(&mut new, kv.mod_revision);
            if same_content(&new, &cur) {
                return Ok(self.present(info, cur));
            }
            // The last finalizer removed from an object being deleted: delete it now.
            if is_deleting(&new) && finalizers(&new).is_empty() && spec_finalizers(&new).is_empty()
            {
                if opts.dry_run {
                    return Ok(self.present(info, new));
                }
                match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok((rev, _)) => {
                        set_resource_version(&mut new, rev);
                        return Ok(self.present(info, new));
                    }
                    Err(skiff_store::Error::Conflict { .. }) if precondition.is_none() => continue,
                    Err(skiff_store::Error::Conflict { .. }) => {
                        return Err(StatusError::conflict(&info.group, &info.plural, name_))
                    }
                    Err(e) => return Err(store_err(e)),
                }
            }
            if opts.dry_run {
                return Ok(self.present(info, new));
            }
            match self
                .store
                .update(&key, encode_for_store(&new).into(), kv.mod_revision)
                .await
            {
                Ok(rev) => {
                    set_resource_version(&mut new, rev);
                    return Ok(self.present(info, new));
                }
                Err(skiff_store::Error::Conflict { .. }) if precondition.is_none() => continue,
                Err(skiff_store::Error::Conflict { .. }) => {
                    return Err(StatusError::conflict(&info.group, &info.plural, name_))
                }
                Err(skiff_store::Error::NotFound(_)) => return Err(not_found(info, name_)),
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(StatusError::conflict_msg(
            &info.group,
            &info.plural,
            name_,
            "too many conflicting writes; please try again",
        ))
    }

    /// The common part of updating the main resource from a full new object.
    fn prepare_main_update(
        &self,
        info: &ResourceInfo,
        mut new: Value,
        old: &Value,
        opts: &WriteOptions,
    ) -> Result<Value> {
        let strat = self.strategy(info);
        // As upstream's BeforeUpdate: an update without a uid keeps the object's, and the
        // creation time is never the client's to change.
        {
            let old_meta = meta(old).cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            if m.get("uid")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                if let Some(uid) = old_meta.get("uid") {
                    m.insert("uid".into(), uid.clone());
                }
            }
            if let Some(t) = old_meta.get("creationTimestamp") {
                m.insert("creationTimestamp".into(), t.clone());
            }
        }
        if info.subresource("status").is_some() {
            match old.get("status") {
                Some(s) => {
                    new["status"] = s.clone();
                }
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        // generation: kept, and bumped when the spec changes.
        let old_gen = meta(old).and_then(|m| m.get("generation")).cloned();
        match old_gen {
            Some(g) => {
                let g = g.as_i64().unwrap_or(1);
                let bump = if info.custom.is_some() {
                    // A custom object's generation counts every change but metadata and status.
                    let body = |v: &Value| {
                        let mut v = v.clone();
                        if let Some(m) = v.as_object_mut() {
                            m.remove("metadata");
                            m.remove("status");
                        }
                        v
                    };
                    body(&new) != body(old)
                } else {
                    new.get("spec") != old.get("spec")
                };
                meta_mut(&mut new).insert("generation".into(), json!(if bump { g + 1 } else { g }));
            }
            None => {
                meta_mut(&mut new).remove("generation");
            }
        }
        if is_deleting(old) {
            // Finalizers may only be removed from an object being deleted.
            let old_f = finalizers(old);
            let new_f = finalizers(&new);
            if new_f.iter().any(|f| !old_f.contains(f)) {
                return Err(StatusError::invalid(
                    &info.group,
                    &info.kind,
                    name(old).unwrap_or(""),
                    &[FieldError::forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        strat.prepare_update(&mut new, old);
        skiff_api::defaults::apply_defaults(&info.group, &info.plural, &mut new);
        let mut errs = skiff_api::validation::validate_update(&info.group, &info.plural, &new, old);
        errs.extend(custom_schema(info, &mut new));
        errs.extend(strat.validate_update(&new, old));
        if !errs.is_empty() {
            return Err(StatusError::invalid(
                &info.group,
                &info.kind,
                name(old).unwrap_or(""),
                &errs,
            ));
        }
        strat.allocate(self, &mut new, Some(old), opts.dry_run)?;
        if !opts.apply {
            track(info, opts, "", Some(old), &mut new);
        }
        Ok(new)
    }

    /// PUT of the main resource.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name_: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value> {
        check_type(info, &obj)?;
        check_name(&obj, name_)?;
        check_body_namespace(info, &obj, ns)?;
        let obj = self.to_storage(info, obj);
        let rv = resource_version(&obj).map(str::to_string);
        self.guaranteed_update(info, ns, name_, rv.as_deref(), opts, |cur| {
            check_uid_precondition(info, name_, &obj, cur)?;
            self.prepare_main_update(info, obj.clone(), cur, opts)
        })
        .await
    }

    /// A whole-object write to the status subresource: only status changes.
    pub async fn update_status(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name_: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value> {
        check_name(&obj, name_)?;
        let obj = self.to_storage(info, obj);
        let rv = resource_version(&obj).map(str::to_string);
        self.guaranteed_update(info, ns, name_, rv.as_deref(), opts, |cur| {
            check_uid_precondition(info, name_, &obj, cur)?;
            let mut new = cur.clone();
            match obj.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            let errs = self.strategy(info).validate_status_update(&new, cur);
            if !errs.is_empty() {
                return Err(StatusError::invalid(&info.group, &info.kind, name_, &errs));
            }
            track(info, opts, "status", Some(cur), &mut new);
            Ok(new)
        })
        .await
    }

    /// Server-side apply (`application/apply-patch+yaml`): create the object if it does not
    /// exist, else merge the applied configuration into it under the manager's field
    /// ownership. Returns the object and whether it was created.
    pub async fn apply(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name_: &str,
        applied: &Value,
        opts: &WriteOptions,
    ) -> Result<(Value, bool)> {
        let manager = opts
            .field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                StatusError::bad_request(
                    "PATCH, application/apply-patch+yaml requests must supply a fieldManager",
                )
            })?;
        if !applied.is_object() {
            return Err(StatusError::bad_request(
                "the body of an apply request must be an object",
            ));
        }
        for field in ["apiVersion", "kind"] {
            if applied
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(StatusError::bad_request(format!(
                    "invalid object type: {field} must be set in an apply request"
                )));
            }
        }
        check_type(info, applied)?;
        check_name(applied, name_)?;
        let opts = WriteOptions {
            apply: true,
            ..opts.clone()
        };
        let time = now_rfc3339();
        let api_version = info.api_version();
        let write = managed::Write {
            manager,
            api_version: &api_version,
            subresource: "",
            scope: scope(info, ""),
            time: &time,
        };
        for _ in 0..8 {
            let key = info.key(ns, name_);
            if self.store.get(&key).await.map_err(store_err)?.is_none() {
                let mut obj = managed::apply(None, applied, &write, opts.force)
                    .map_err(|c| StatusError::apply_conflict(&c))?;
                if let Some(m) = obj.as_object_mut() {
                    m.insert("apiVersion".into(), json!(api_version));
                    m.insert("kind".into(), json!(info.kind));
                }
                meta_mut(&mut obj).insert("name".into(), json!(name_));
                match self.create(info, ns, obj, &opts).await {
                    Ok(v) => return Ok((v, true)),
                    // Somebody created it meanwhile: apply onto theirs.
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                }
            }
            let out = self
                .guaranteed_update(info, ns, name_, None, &opts, |cur| {
                    let external = self.present(info, cur.clone());
                    let merged = managed::apply(Some(&external), applied, &write, opts.force)
                        .map_err(|c| StatusError::apply_conflict(&c))?;
                    let merged = self.to_storage(info, merged);
                    self.prepare_main_update(info, merged, cur, &opts)
                })
                .await;
            match out {
                Err(e) if e.code == 404 => continue,
                other => return other.map(|v| (v, false)),
            }
        }
        Err(StatusError::conflict(&info.group, &info.plural, name_))
    }

    /// PATCH of the main resource or its status.
    pub async fn patch(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name_: &str,
        patch_type: &str,
        patch: &Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value> {
        let rv = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.guaranteed_update(info, ns, name_, rv.as_deref(), opts, |cur| {
            // A patch is written against the version the client speaks.
            let external = self.present(info, cur.clone());
            let patched = apply_patch(info, &external, patch_type, patch)?;
            if !status {
                check_type(info, &patched)?;
            }
            let patched = self.to_storage(info, patched);
            if status {
                let mut new = cur.clone();
                match patched.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                track(info, opts, "status", Some(cur), &mut new);
                Ok(new)
            } else {
                check_name(&patched, name_)?;
                self.prepare_main_update(info, patched, cur, opts)
            }
        })
        .await
    }

    /// DELETE of one object: graceful where the strategy says so, blocked by finalizers.
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name_: &str,
        opts: &DeleteOptions,
    ) -> Result<(Value, bool)> {
        let key = info.key(ns, name_);
        let strat = self.strategy(info);
        for _ in 0..64 {
            let (kv, cur) = self.load(info, &key, name_).await?;
            if let Some(uid) = &opts.precondition_uid {
                if meta_str(&cur, "uid") != Some(uid.as_str()) {
                    return Err(StatusError::conflict_msg(
                        &info.group,
                        &info.plural,
                        name_,
                        &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&cur, "uid").unwrap_or("")
                    ),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_rv {
                if parse_rv(rv)? != kv.mod_revision {
                    return Err(StatusError::conflict_msg(&info.group, &info.plural, name_, &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    )));
                }
            }
            let mut new = cur.clone();
            let mut keep = false;
            // Graceful deletion (pods on nodes): mark, and let the node finish it.
            let grace = strat.grace_period(&cur, opts.grace_period_seconds);
            let already = is_deleting(&cur);
            if let Some(g) = grace.filter(|g| *g > 0) {
                let m = meta_mut(&mut new);
                let shorter = m
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .is_none_or(|old| g < old);
                if !already || shorter {
                    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(g));
                }
                keep = true;
            }
            // Propagation policies the garbage collector acts on.
            let mut fins = finalizers(&new);
            match opts.propagation_policy.as_deref() {
                Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                    fins.push("foregroundDeletion".into())
                }
                Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
                _ => {}
            }
            if info.plural == "namespaces" && info.group.is_empty() {
                keep = true;
                new["status"]["phase"] = json!("Terminating");
            }
            if !fins.is_empty() {
                keep = true;
                meta_mut(&mut new).insert("finalizers".into(), json!(fins));
            }
            if keep {
                if !is_deleting(&new) {
                    let m = meta_mut(&mut new);
                    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    m.insert(
                        "deletionGracePeriodSeconds".into(),
                        json!(grace.unwrap_or(0)),
                    );
                }
                if same_content(&new, &cur) {
                    return Ok((self.present(info, cur), false));
                }
                if opts.dry_run {
                    return Ok((self.present(info, new), false));
                }
                match self
                    .store
                    .update(&key, encode_for_store(&new).into(), kv.mod_revision)
                    .await
                {
                    Ok(rev) => {
                        set_resource_version(&mut new, rev);
                        return Ok((self.present(info, new), false));
                    }
                    Err(skiff_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(store_err(e)),
                }
            }
            if opts.dry_run {
                return Ok((self.present(info, cur), true));
            }
            match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(_) => {
                    return Ok((self.present(info, cur), true));
                }
                Err(skiff_store::Error::Conflict { .. }) => continue,
                Err(skiff_store::Error::NotFound(_)) => return Err(not_found(info, name_)),
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(StatusError::conflict_msg(
            &info.group,
            &info.plural,
            name_,
            "too many conflicting writes; please try again",
        ))
    }
}

/// A namespace's `spec.finalizers` (other kinds have none).
fn spec_finalizers(obj: &Value) -> Vec<Value> {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn page(items: Vec<Arc<CachedObject>>, rev: Revision, more: bool) -> ListResponse {
    let continue_token = if more {
        items.last().map(|o| encode_continue(rev, &o.key))
    } else {
        None
    };
    ListResponse {
        items,
        revision: rev,
        continue_token,
        remaining: None,
    }
}

/// Continue tokens carry the revision of the first page and the last key returned, like
/// upstream's (base64 of a small JSON document).
pub fn encode_continue(rev: Revision, last_key: &str) -> String {
    use base64::Engine;
    let doc = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": last_key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(doc.to_string())
}

pub fn decode_continue(token: &str) -> Result<(Revision, String)> {
    use base64::Engine;
    let bad = || StatusError::bad_request("continue key is not valid: illegal base64 data");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let doc: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = doc.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = doc
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    Ok((rev, start))
}

pub fn parse_rv(rv: &str) -> Result<Revision> {
    rv.parse::<Revision>()
        .map_err(|_| StatusError::bad_request(format!("invalid resource version: {rv:?}")))
}

pub fn not_found(info: &ResourceInfo, name: &str) -> StatusError {
    StatusError::not_found(&info.group, &info.plural, name)
}

pub fn store_err(e: skiff_store::Error) -> StatusError {
    match e {
        skiff_store::Error::Compacted { .. } => StatusError::expired(format!(
            "The resourceVersion for the provided list is too old. ({e})"
        )),
        skiff_store::Error::FutureRevision { requested, current } => StatusError::timeout(format!(
            "Too large resource version: {requested}, current: {current}"
        )),
        skiff_store::Error::Unavailable(m) => StatusError::service_unavailable(m),
        other => StatusError::internal(other.to_string()),
    }
}

fn cache_err(e: crate::watchcache::CacheError) -> StatusError {
    match e {
        crate::watchcache::CacheError::TooOld { .. } => StatusError::expired(e.to_string()),
        crate::watchcache::CacheError::TooNew { requested, current } => {
            let mut s = StatusError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            ));
            s.details = Some(json!({"causes": [{"reason": "ResourceVersionTooLarge",
                "message": "Too large resource version"}], "retryAfterSeconds": 1}));
            s
        }
    }
}

/// The body's apiVersion/kind, when given, must be this resource's.
fn check_type(info: &ResourceInfo, obj: &Value) -> Result<()> {
    if !obj.is_object() {
        return Err(StatusError::bad_request(
            "the body of the request was not a JSON object",
        ));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        let want = info.api_version();
        if av != want {
            return Err(StatusError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want})"
            )));
        }
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
        if k != info.kind {
            return Err(StatusError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

fn check_name(obj: &Value, url_name: &str) -> Result<()> {
    match name(obj) {
        Some(n) if n != url_name => Err(StatusError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({url_name})"
        ))),
        _ => Ok(()),
    }
}

fn check_body_namespace(info: &ResourceInfo, obj: &Value, ns: Option<&str>) -> Result<()> {
    if info.namespaced() {
        if let (Some(b), Some(u)) = (namespace(obj), ns) {
            if b != u {
                return Err(StatusError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    Ok(())
}

/// Apply a patch of the given media type to `cur`.
pub fn apply_patch(
    info: &ResourceInfo,
    cur: &Value,
    patch_type: &str,
    patch: &Value,
) -> Result<Value> {
    let mut doc = cur.clone();
    match patch_type {
        "application/merge-patch+json" => {
            json_patch::merge(&mut doc, patch);
        }
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| StatusError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &p).map_err(|e| {
                // As upstream's NewGenericServerResponse(422, ...): the generic message, no
                // kind or causes (the patch library's error stays in the log).
                tracing::debug!(error = %e, "JSON patch failed");
                StatusError {
                    code: 422,
                    reason: "Invalid",
                    message: "the server rejected our request due to an error in our request"
                        .into(),
                    details: Some(json!({"group": info.group, "kind": "", "name": ""})),
                }
            })?;
        }
        "application/strategic-merge-patch+json" if info.custom.is_some() => {
            // Custom resources have no merge keys to merge by, as upstream.
            return Err(StatusError {
                code: 415,
                reason: "UnsupportedMediaType",
                message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
                details: None,
            });
        }
        "application/strategic-merge-patch+json" => {
            doc = crate::registry::strategy::strategic_merge(info, cur, patch)?;
        }
        other => return Err(StatusError::unsupported_media_type(other)),
    }
    Ok(doc)
}

/// A whole-object write (PUT) that names a uid must be about that object, as upstream's
/// Update takes the body's uid as a storage precondition: 409, not an overwrite.
fn check_uid_precondition(
    info: &ResourceInfo,
    name_: &str,
    obj: &Value,
    cur: &Value,
) -> Result<()> {
    let Some(uid) = meta_str(obj, "uid").filter(|u| !u.is_empty()) else {
        return Ok(());
    };
    let have = meta_str(cur, "uid").unwrap_or("");
    if uid == have {
        return Ok(());
    }
    Err(StatusError::conflict_msg(
        &info.group,
        &info.plural,
        name_,
        &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
    ))
}
