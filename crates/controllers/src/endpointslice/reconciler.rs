//! The EndpointSlice reconciler, as upstream's (`k8s.io/endpointslice`): a pure function from a
//! Service, its desired endpoints per set of ports, and its existing slices to the slices to
//! create, update and delete.
//!
//! It keeps churn low rather than packing slices tight: an endpoint stays in the slice it is
//! in; removed endpoints leave their slice; new endpoints first fill slices that are being
//! updated anyway, then one unchanged slice they all fit in, and only then new slices; a slice
//! left without endpoints is deleted. Slices are never repacked, so after a scale-down several
//! part-filled slices may remain. A Service without endpoints keeps one empty placeholder
//! slice, and a slice about to be deleted is reused (rewritten) for a slice about to be created.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{CONTROLLER_NAME, MANAGED_BY, SERVICE_NAME};

/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Marks the slices of a Service without a cluster IP.
pub const HEADLESS: &str = "service.kubernetes.io/headless";
/// The only address type skiff's controller writes.
pub const ADDRESS_TYPE: &str = "IPv4";

/// The writes of one sync; they are made in this order: creates, updates, deletes.
#[derive(Debug, Default)]
pub struct Plan {
    /// New slices without a name: the server names them from `generateName`.
    pub create: Vec<EndpointSlice>,
    /// Whole slices to write over the existing ones of the same name.
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

/// Ports compared regardless of order, as upstream's `PortMapKey`.
type PortKey = Vec<(String, i32, String, Option<String>)>;

/// What identifies an endpoint across syncs (upstream's `hashEndpoint`): its addresses,
/// hostname and target. Conditions and node may change in place.
type EndpointKey = (Vec<String>, String, String, String);

fn port_key(ports: Option<&Vec<EndpointPort>>) -> PortKey {
    let mut key: PortKey = ports
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let mut addresses = e.addresses.clone();
    addresses.sort();
    let target = e.target_ref.as_ref();
    (
        addresses,
        e.hostname.clone().unwrap_or_default(),
        target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        target.and_then(|t| t.name.clone()).unwrap_or_default(),
    )
}

/// Whether two endpoints with the same key need no write (upstream's
/// `EndpointsEqualBeyondHash`; a target's resourceVersion does not count).
fn same_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    let conditions = |e: &Endpoint| {
        let c = e.conditions.clone().unwrap_or_default();
        (c.ready, c.serving, c.terminating)
    };
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut t| {
            t.resource_version = None;
            t
        })
    };
    a.node_name == b.node_name
        && a.zone == b.zone
        && conditions(a) == conditions(b)
        && target(a) == target(b)
}

fn is_reserved_label(key: &str) -> bool {
    key == SERVICE_NAME || key == MANAGED_BY || key == HEADLESS
}

fn has_cluster_ip(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// A slice's labels: the Service's own, the headless marker, the service name and the
/// manager. Also whether the Service's own labels differ from the slice's: as upstream, only
/// those make an otherwise unchanged slice worth an update.
fn slice_labels(
    current: Option<&BTreeMap<String, String>>,
    svc: &Service,
) -> (BTreeMap<String, String>, bool) {
    let own = |labels: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
        labels
            .into_iter()
            .flatten()
            .filter(|(k, _)| !is_reserved_label(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut labels = own(svc.metadata.labels.as_ref());
    let changed = own(current) != labels;
    if !has_cluster_ip(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels.insert(SERVICE_NAME.into(), svc.name_any());
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    (labels, changed)
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice.owner_references().iter().any(|o| {
        Some(&o.uid) == svc.metadata.uid.as_ref() && o.kind == "Service" && o.api_version == "v1"
    })
}

/// An empty slice of `svc` for `ports`, named by the server as `<service>-<5 chars>`.
fn new_slice(svc: &Service, ports: &[EndpointPort]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.name_any())),
            namespace: svc.namespace(),
            labels: Some(slice_labels(None, svc).0),
            owner_references: Some(vec![skiff_client::controller_ref(
                "v1",
                "Service",
                &svc.metadata,
            )]),
            ..Default::default()
        },
        address_type: ADDRESS_TYPE.into(),
        endpoints: Vec::new(),
        ports: Some(ports.to_vec()),
    }
}

/// Whether `slice` already is the placeholder `p` (upstream compares namespace, labels,
/// address type, ports and endpoints).
fn same_as_placeholder(slice: &EndpointSlice, p: &EndpointSlice) -> bool {
    slice.metadata.namespace == p.metadata.namespace
        && slice.labels() == p.labels()
        && slice.address_type == p.address_type
        && port_key(slice.ports.as_ref()) == port_key(p.ports.as_ref())
        && slice.endpoints == p.endpoints
}

/// The writes that bring `existing` (the slices labelled as this controller's for `svc`) to
/// `desired`: for each set of ports (in the Service's order), the endpoints that serve it.
/// Each slice holds at most `max` endpoints.
pub fn reconcile(
    svc: &Service,
    desired: Vec<(Vec<EndpointPort>, Vec<Endpoint>)>,
    existing: &[&EndpointSlice],
    max: usize,
) -> Plan {
    let max = max.max(1);
    let mut existing = existing.to_vec();
    existing.sort_by_key(|s| s.name_any());
    let (ours, other_type): (Vec<&EndpointSlice>, Vec<&EndpointSlice>) = existing
        .into_iter()
        .partition(|s| s.address_type == ADDRESS_TYPE);

    let mut delete: Vec<&EndpointSlice> = Vec::new();
    let mut by_ports: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in &ours {
        if owned_by(s, svc) {
            by_ports
                .entry(port_key(s.ports.as_ref()))
                .or_default()
                .push(s);
        } else {
            // Left by an earlier Service of the same name.
            delete.push(s);
        }
    }

    let mut want: BTreeMap<PortKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> =
        BTreeMap::new();
    for (ports, endpoints) in desired {
        let entry = want
            .entry(port_key(Some(&ports)))
            .or_insert_with(|| (ports, BTreeMap::new()));
        for e in endpoints.into_iter().filter(|e| !e.addresses.is_empty()) {
            entry.1.insert(endpoint_key(&e), e);
        }
    }

    let mut create = Vec::new();
    let mut update = Vec::new();
    for (key, (ports, endpoints)) in &want {
        let slices = by_ports.get(key).map(Vec::as_slice).unwrap_or_default();
        let (c, u, d) = by_port_set(svc, slices, endpoints.clone(), ports, max);
        create.extend(c);
        update.extend(u);
        delete.extend(d);
    }
    for (key, slices) in &by_ports {
        if !want.contains_key(key) {
            delete.extend(slices);
        }
    }

    // Without any slice left, one empty slice still says "no endpoints".
    if ours.len() == delete.len() && create.is_empty() {
        let placeholder = new_slice(svc, &[]);
        if delete.len() == 1 && same_as_placeholder(delete[0], &placeholder) {
            delete.clear();
        } else {
            create.push(placeholder);
        }
    }

    // Rather than delete one slice and create another, rewrite the first.
    let mut i = 0;
    while i < delete.len() && !create.is_empty() {
        if owned_by(delete[i], svc) {
            let old = delete.remove(i);
            let mut s = create.pop().expect("not empty");
            s.metadata.name = old.metadata.name.clone();
            s.metadata.resource_version = old.metadata.resource_version.clone();
            update.push(s);
        } else {
            i += 1;
        }
    }

    delete.extend(other_type);
    Plan {
        create,
        update,
        delete: delete.into_iter().cloned().collect(),
    }
}

/// Upstream's `reconcileByPortMapping`: (create, update, delete) for the slices of one set of
/// ports.
fn by_port_set<'a>(
    svc: &Service,
    existing: &[&'a EndpointSlice],
    mut want: BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    max: usize,
) -> (
    Vec<EndpointSlice>,
    Vec<EndpointSlice>,
    Vec<&'a EndpointSlice>,
) {
    let mut changed: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeMap<String, &EndpointSlice> = BTreeMap::new();
    let mut delete = Vec::new();

    // 1. Keep the endpoints still wanted where they are, updated; drop the others.
    for &s in existing {
        let mut kept = Vec::with_capacity(s.endpoints.len());
        let mut endpoint_changed = false;
        for e in &s.endpoints {
            // Removed once placed, so a duplicate in another slice is dropped there.
            if let Some(w) = want.remove(&endpoint_key(e)) {
                endpoint_changed |= !same_beyond_key(&w, e);
                kept.push(w);
            }
        }
        let (labels, labels_changed) = slice_labels(s.metadata.labels.as_ref(), svc);
        if endpoint_changed || kept.len() != s.endpoints.len() {
            if kept.is_empty() {
                delete.push(s);
            } else {
                let mut c = s.clone();
                c.endpoints = kept;
                c.metadata.labels = Some(labels);
                changed.insert(s.name_any(), c);
            }
        } else if labels_changed {
            let mut c = s.clone();
            c.metadata.labels = Some(labels);
            changed.insert(s.name_any(), c);
        } else {
            unchanged.insert(s.name_any(), s);
        }
    }

    // 2. New endpoints first fill the slices written anyway, the fullest first.
    if !want.is_empty() {
        let mut names: Vec<String> = changed.keys().cloned().collect();
        names.sort_by_key(|n| Reverse(changed[n].endpoints.len()));
        for n in names {
            fill(changed.get_mut(&n).expect("listed"), &mut want, max);
        }
    }

    // 3. Then the one unchanged slice they all fit in best, or new slices.
    let mut create = Vec::new();
    while !want.is_empty() {
        let target = if want.len() < max {
            slice_to_fill(unchanged.values().copied(), want.len(), max)
        } else {
            None
        };
        match target {
            Some(name) => {
                let mut s = unchanged.remove(&name).expect("listed").clone();
                fill(&mut s, &mut want, max);
                changed.insert(name, s);
            }
            None => {
                let mut s = new_slice(svc, ports);
                fill(&mut s, &mut want, max);
                create.push(s);
            }
        }
    }
    (create, changed.into_values().collect(), delete)
}

fn fill(slice: &mut EndpointSlice, want: &mut BTreeMap<EndpointKey, Endpoint>, max: usize) {
    while slice.endpoints.len() < max {
        let Some((_, e)) = want.pop_first() else {
            break;
        };
        slice.endpoints.push(e);
    }
}

/// The slice that would be closest to full with `n` more endpoints, without going over.
fn slice_to_fill<'a>(
    slices: impl Iterator<Item = &'a EndpointSlice>,
    n: usize,
    max: usize,
) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for s in slices {
        let Some(room) = max.checked_sub(n + s.endpoints.len()) else {
            continue;
        };
        if best.as_ref().is_none_or(|(r, _)| room < *r) {
            best = Some((room, s.name_any()));
            if room == 0 {
                break;
            }
        }
    }
    best.map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::EndpointConditions;

    use super::*;

    fn svc() -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1",
                         "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                     "ports": [{"port": 80, "targetPort": 8080}]}
        }))
        .unwrap()
    }

    fn ports(port: i32) -> Vec<EndpointPort> {
        vec![EndpointPort {
            name: Some(String::new()),
            port: Some(port),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]
    }

    fn ip(i: usize) -> String {
        format!("10.42.{}.{}", i / 250, i % 250 + 2)
    }

    fn ep(i: usize, ready: bool) -> Endpoint {
        Endpoint {
            addresses: vec![ip(i)],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready),
                terminating: Some(false),
            }),
            node_name: Some("node-1".into()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some("default".into()),
                name: Some(format!("web-{i}")),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn eps(range: impl IntoIterator<Item = usize>) -> Vec<Endpoint> {
        range.into_iter().map(|i| ep(i, true)).collect()
    }

    /// The server's side of a plan: names new slices `web-<n>` and returns the slices after
    /// the writes.
    fn apply(existing: &[EndpointSlice], plan: &Plan) -> Vec<EndpointSlice> {
        let mut by_name: BTreeMap<String, EndpointSlice> =
            existing.iter().map(|s| (s.name_any(), s.clone())).collect();
        for (i, s) in plan.create.iter().enumerate() {
            let mut s = s.clone();
            assert!(s.metadata.name.is_none());
            s.metadata.name = Some(format!("web-new{}-{i}", by_name.len()));
            by_name.insert(s.name_any(), s);
        }
        for s in &plan.update {
            assert!(
                by_name.contains_key(&s.name_any()),
                "update of a missing slice"
            );
            by_name.insert(s.name_any(), s.clone());
        }
        for s in &plan.delete {
            assert!(
                by_name.remove(&s.name_any()).is_some(),
                "delete of a missing slice"
            );
        }
        by_name.into_values().collect()
    }

    fn run(
        existing: &[EndpointSlice],
        desired: Vec<(Vec<EndpointPort>, Vec<Endpoint>)>,
    ) -> (Plan, Vec<EndpointSlice>) {
        let refs: Vec<&EndpointSlice> = existing.iter().collect();
        let plan = reconcile(&svc(), desired, &refs, MAX_ENDPOINTS_PER_SLICE);
        let after = apply(existing, &plan);
        (plan, after)
    }

    fn ips(s: &EndpointSlice) -> BTreeSet<String> {
        s.endpoints.iter().map(|e| e.addresses[0].clone()).collect()
    }

    fn all_ips(slices: &[EndpointSlice]) -> Vec<String> {
        let mut v: Vec<String> = slices
            .iter()
            .flat_map(|s| s.endpoints.iter().map(|e| e.addresses[0].clone()))
            .collect();
        v.sort();
        v
    }

    fn sizes(slices: &[EndpointSlice]) -> Vec<usize> {
        let mut v: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        v.sort();
        v
    }

    #[test]
    fn endpoints_spread_over_slices_of_at_most_100() {
        let (plan, after) = run(&[], vec![(ports(8080), eps(0..250))]);
        // The placeholder a new Service would have had is not there: three creates.
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (3, 0, 0)
        );
        assert_eq!(sizes(&after), vec![50, 100, 100]);
        let want: Vec<String> = {
            let mut v: Vec<String> = (0..250).map(ip).collect();
            v.sort();
            v
        };
        assert_eq!(all_ips(&after), want, "every endpoint exactly once");
        for s in &plan.create {
            assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
            assert_eq!(s.address_type, "IPv4");
            assert_eq!(s.ports, Some(ports(8080)));
            let l = s.labels();
            assert_eq!(l[SERVICE_NAME], "web");
            assert_eq!(l[MANAGED_BY], CONTROLLER_NAME);
            assert_eq!(l["app"], "web", "the Service's labels are copied");
            assert!(!l.contains_key(HEADLESS));
            let o = &s.owner_references()[0];
            assert_eq!(
                (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
                ("Service", "web", "u1")
            );
            assert_eq!(o.controller, Some(true));
        }
        // Nothing changed: nothing to write.
        let (again, _) = run(&after, vec![(ports(8080), eps(0..250))]);
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
    }

    #[test]
    fn removing_one_endpoint_updates_only_its_slice() {
        let (_, before) = run(&[], vec![(ports(8080), eps(0..250))]);
        let gone = ip(120);
        let holder = before.iter().find(|s| ips(s).contains(&gone)).unwrap();
        let (plan, after) = run(
            &before,
            vec![(ports(8080), eps((0..250).filter(|&i| i != 120)))],
        );
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.update.len(), 1);
        assert_eq!(plan.update[0].name_any(), holder.name_any());
        let mut want = ips(holder);
        want.remove(&gone);
        assert_eq!(ips(&plan.update[0]), want);
        assert_eq!(
            plan.update[0].metadata.resource_version,
            holder.metadata.resource_version
        );
        assert_eq!(all_ips(&after).len(), 249);
    }

    #[test]
    fn a_changed_condition_is_rewritten_in_place() {
        let (_, before) = run(&[], vec![(ports(8080), eps(0..150))]);
        let mut desired = eps(0..150);
        desired[7] = ep(7, false);
        let (plan, after) = run(&before, vec![(ports(8080), desired)]);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.update.len(), 1);
        for s in &before {
            let now = after.iter().find(|a| a.name_any() == s.name_any()).unwrap();
            assert_eq!(ips(now), ips(s), "no endpoint moves");
        }
    }

    #[test]
    fn a_new_endpoint_fills_a_slice_with_room() {
        let (_, before) = run(&[], vec![(ports(8080), eps(0..250))]);
        let (plan, after) = run(&before, vec![(ports(8080), eps(0..251))]);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.update.len(), 1);
        assert_eq!(plan.update[0].endpoints.len(), 51);
        assert_eq!(sizes(&after), vec![51, 100, 100]);
    }

    #[test]
    fn new_endpoints_go_to_the_slice_they_fit_best_or_a_new_one() {
        // Slices of 30 and 80 (nothing else changes): 15 more fit both, best into the 80.
        let (_, a) = run(&[], vec![(ports(8080), eps(0..30))]);
        let (_, b) = run(&a, vec![(ports(8080), eps(0..110))]);
        assert_eq!(sizes(&b), vec![30, 80], "80 do not fit beside 30");
        let (_, c) = run(&b, vec![(ports(8080), eps(0..125))]);
        assert_eq!(sizes(&c), vec![30, 95]);
        // 71 fit nowhere: a new slice, even with 75 free places in total.
        let (plan, d) = run(&c, vec![(ports(8080), eps(0..196))]);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(sizes(&d), vec![30, 71, 95]);
    }

    #[test]
    fn new_endpoints_fill_a_slice_being_updated_first() {
        let (_, before) = run(&[], vec![(ports(8080), eps(0..150))]);
        // One endpoint leaves the slice of 50, and 60 arrive: its slice is written anyway,
        // so it takes 51 of them, and the other 9 fit nowhere else: a new slice.
        let small = before.iter().find(|s| s.endpoints.len() == 50).unwrap();
        let leaving: String = ips(small).into_iter().next().unwrap();
        let desired: Vec<Endpoint> = eps(0..210)
            .into_iter()
            .filter(|e| e.addresses[0] != leaving)
            .collect();
        let (plan, after) = run(&before, vec![(ports(8080), desired)]);
        assert_eq!(plan.update.len(), 1);
        assert_eq!(plan.update[0].name_any(), small.name_any());
        assert_eq!(plan.update[0].endpoints.len(), 100);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(sizes(&after), vec![9, 100, 100]);
    }

    #[test]
    fn scaling_down_keeps_part_filled_slices_and_deletes_emptied_ones() {
        let (_, before) = run(&[], vec![(ports(8080), eps(0..150))]);
        // Keep 50, spread over both slices: both stay, no endpoint moves.
        let keep: Vec<usize> = (0..150).step_by(3).collect();
        let (plan, after) = run(&before, vec![(ports(8080), eps(keep.iter().copied()))]);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(after.len(), 2, "slices are not repacked");
        for s in &before {
            let now = after.iter().find(|a| a.name_any() == s.name_any()).unwrap();
            assert!(ips(now).is_subset(&ips(s)), "no endpoint moves");
        }
        // Keep only endpoints of one slice: the other is deleted.
        let first = &before[0];
        let keep: Vec<Endpoint> = eps(0..150)
            .into_iter()
            .filter(|e| ips(first).contains(&e.addresses[0]))
            .collect();
        let (plan, after) = run(&before, vec![(ports(8080), keep)]);
        assert!(plan.create.is_empty() && plan.update.is_empty());
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].name_any(), first.name_any());
    }

    #[test]
    fn no_endpoints_leave_one_placeholder() {
        // A new Service: one empty slice.
        let (plan, after) = run(&[], vec![]);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(after.len(), 1);
        assert!(after[0].endpoints.is_empty());
        assert_eq!(after[0].ports, Some(vec![]));
        // It stays as it is.
        let (plan, _) = run(&after, vec![]);
        assert!(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty());
        // Endpoints arrive: the placeholder is rewritten rather than replaced.
        let placeholder = after[0].name_any();
        let (plan, with) = run(&after, vec![(ports(8080), eps(0..150))]);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (1, 1, 0)
        );
        assert!(with.iter().any(|s| s.name_any() == placeholder));
        // All gone: one of the slices becomes the placeholder, the other is deleted.
        let (plan, empty) = run(&with, vec![]);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 1)
        );
        assert_eq!(empty.len(), 1);
        assert!(empty[0].endpoints.is_empty());
        assert_eq!(empty[0].ports, Some(vec![]));
        assert!(with.iter().any(|s| s.name_any() == empty[0].name_any()));
    }

    #[test]
    fn a_port_change_moves_endpoints_to_slices_of_the_new_ports() {
        let (_, before) = run(&[], vec![(ports(8080), eps(0..150))]);
        // Upstream turns "delete the old, create the new" into rewrites of the old slices.
        let (plan, after) = run(&before, vec![(ports(9090), eps(0..150))]);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.update.len(), 2);
        assert!(after.iter().all(|s| s.ports == Some(ports(9090))));
        assert_eq!(sizes(&after), vec![50, 100]);
        // Fewer endpoints on the new ports than slices: the old slice left over is deleted.
        let (plan, after) = run(&before, vec![(ports(7070), eps(0..40))]);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 1)
        );
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].ports, Some(ports(7070)));
        assert_eq!(after[0].endpoints.len(), 40);
    }

    #[test]
    fn two_port_sets_get_slices_of_their_own() {
        let (plan, after) = run(
            &[],
            vec![(ports(8080), eps(0..120)), (ports(9090), eps(120..130))],
        );
        assert_eq!(plan.create.len(), 3);
        let on = |p: i32| {
            let mut v: Vec<usize> = after
                .iter()
                .filter(|s| s.ports == Some(ports(p)))
                .map(|s| s.endpoints.len())
                .collect();
            v.sort();
            v
        };
        assert_eq!(on(8080), vec![20, 100]);
        assert_eq!(on(9090), vec![10]);
    }

    #[test]
    fn duplicates_foreign_and_wrongly_typed_slices_are_cleaned_up() {
        let (_, mut before) = run(&[], vec![(ports(8080), eps(0..10))]);
        // A copy of the slice under another name, as a write on a stale cache would leave.
        let mut dup = before[0].clone();
        dup.metadata.name = Some("web-zzzzz".into());
        before.push(dup);
        // A slice of an earlier Service named web.
        let mut foreign = before[0].clone();
        foreign.metadata.name = Some("web-old00".into());
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "u0".into();
        before.push(foreign);
        let mut v6 = before[0].clone();
        v6.metadata.name = Some("web-v6000".into());
        v6.address_type = "IPv6".into();
        before.push(v6);
        let (plan, after) = run(&before, vec![(ports(8080), eps(0..10))]);
        let deleted: BTreeSet<String> = plan.delete.iter().map(|s| s.name_any()).collect();
        assert_eq!(
            deleted,
            ["web-old00", "web-v6000", "web-zzzzz"]
                .map(String::from)
                .into()
        );
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].endpoints.len(), 10);
    }

    #[test]
    fn labels_follow_the_service() {
        let (_, before) = run(&[], vec![(ports(8080), eps(0..10))]);
        let mut s = svc();
        s.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "front".into());
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let refs: Vec<&EndpointSlice> = before.iter().collect();
        let plan = reconcile(&s, vec![(ports(8080), eps(0..10))], &refs, 100);
        assert_eq!(plan.update.len(), 1);
        let l = plan.update[0].labels();
        assert_eq!(l["tier"], "front");
        assert_eq!(l[HEADLESS], "");
        assert_eq!(l[SERVICE_NAME], "web");
    }
}
