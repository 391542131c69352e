//! ClusterIP and NodePort allocation for Services.
//!
//! The Services themselves are the record of what is allocated (as upstream's repair loop
//! treats them): an address or port is in use when a Service in the watch cache holds it, or
//! when this server handed it out moments ago and the cache has not seen that Service yet
//! (the reservation ends once the cache shows it). Deleting a Service therefore releases its
//! addresses with no extra bookkeeping.
//! One allocator per API server: two servers sharing an etcd could race on the same free
//! address in the instant between allocation and the cache seeing the other's Service.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde_json::{json, Value};
use skiff_api::status::FieldError;

use crate::watchcache::WatchCache;

const SERVICES_PREFIX: &str = "/registry/core/services/";
/// How long a fresh allocation is held before the cache must show its Service.
const RESERVATION: Duration = Duration::from_secs(60);

pub struct Allocator {
    pub cidr: Ipv4Net,
    pub node_ports: (u16, u16),
    reserved_ips: Mutex<HashMap<Ipv4Addr, Instant>>,
    reserved_ports: Mutex<HashMap<(u16, String), Instant>>,
}

#[derive(Default)]
struct InUse {
    ips: HashSet<Ipv4Addr>,
    /// (nodePort, protocol)
    ports: HashSet<(u16, String)>,
}

fn service_key(svc: &Value) -> String {
    format!(
        "{}/{}",
        svc.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
        svc.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    )
}

fn cluster_ip(svc: &Value) -> Option<&str> {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Allocator {
    pub fn new(cidr: Ipv4Net, node_ports: (u16, u16)) -> Self {
        Allocator {
            cidr,
            node_ports,
            reserved_ips: Mutex::new(HashMap::new()),
            reserved_ports: Mutex::new(HashMap::new()),
        }
    }

    /// The first address of the range: the `kubernetes` Service's.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + 1)
    }

    fn in_use(&self, cache: &WatchCache, except: &str) -> InUse {
        let mut u = InUse::default();
        let (items, _, _) = cache.list(SERVICES_PREFIX, None, 0, &|_| true);
        for o in items {
            let svc = o.value();
            if service_key(&svc) == except {
                continue;
            }
            if let Some(ip) = cluster_ip(&svc).and_then(|s| s.parse().ok()) {
                u.ips.insert(ip);
            }
            for p in svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(np) = p.get("nodePort").and_then(Value::as_u64) {
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    u.ports.insert((np as u16, proto.to_string()));
                }
            }
        }
        // A reservation ends when its Service shows up in the cache (the Service is the record
        // from then on, and deleting it frees the address) or when it expires.
        let now = Instant::now();
        let mut r = self.reserved_ips.lock().unwrap();
        r.retain(|ip, t| now.duration_since(*t) < RESERVATION && !u.ips.contains(ip));
        u.ips.extend(r.keys().copied());
        let mut r = self.reserved_ports.lock().unwrap();
        r.retain(|p, t| now.duration_since(*t) < RESERVATION && !u.ports.contains(p));
        u.ports.extend(r.keys().cloned());
        u
    }

    /// Give a Service its ClusterIP and NodePorts (create: `old` is `None`), keeping what it
    /// already had and rejecting addresses or ports another Service holds.
    pub fn allocate(
        &self,
        cache: &WatchCache,
        svc: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<(), Vec<FieldError>> {
        // One allocation at a time, so two requests never pick the same free value.
        static LOCK: Mutex<()> = Mutex::new(());
        let _g = LOCK.lock().unwrap();
        let me = service_key(svc);
        let used = self.in_use(cache, &me);
        let mut errs = Vec::new();
        let ty = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };

        // ClusterIP.
        if ty == "ExternalName" {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        } else {
            let wanted = spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let previous = old.and_then(cluster_ip).map(str::to_string);
            let ip = match (wanted.as_str(), previous) {
                ("", Some(p)) => p,
                ("", None) => match self.pick_ip(&used) {
                    Some(ip) => {
                        if !dry_run {
                            self.reserved_ips.lock().unwrap().insert(ip, Instant::now());
                        }
                        ip.to_string()
                    }
                    None => {
                        errs.push(FieldError::invalid(
                            "spec.clusterIPs",
                            json!([]),
                            "failed to allocate IP: range is full",
                        ));
                        String::new()
                    }
                },
                ("None", _) => "None".to_string(),
                (w, Some(p)) if w == p => p,
                (w, _) => {
                    match w.parse::<Ipv4Addr>() {
                        Ok(ip) if !self.cidr.contains(&ip) => errs.push(FieldError::invalid(
                            "spec.clusterIPs",
                            json!([w]),
                            format!(
                                "failed to allocate IP {w}: the provided IP ({w}) is not in the valid range. The range of valid IPs is {}",
                                self.cidr
                            ),
                        )),
                        Ok(ip) if used.ips.contains(&ip) => errs.push(FieldError::invalid(
                            "spec.clusterIPs",
                            json!([w]),
                            format!("failed to allocate IP {w}: provided IP is already allocated"),
                        )),
                        Ok(ip) => {
                            if !dry_run {
                                self.reserved_ips
                                    .lock()
                                    .unwrap()
                                    .insert(ip, Instant::now());
                            }
                        }
                        Err(_) => errs.push(FieldError::invalid(
                            "spec.clusterIPs[0]",
                            json!(w),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )),
                    }
                    w.to_string()
                }
            };
            if !ip.is_empty() {
                spec.insert("clusterIP".into(), json!(ip));
                spec.insert("clusterIPs".into(), json!([ip]));
            }
        }

        // NodePorts.
        let wants_node_ports = ty == "NodePort" || ty == "LoadBalancer";
        let old_ports: Vec<Value> = old
            .and_then(|o| o.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut taken = used.ports.clone();
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for (i, p) in ports.iter_mut().enumerate() {
                let Some(pm) = p.as_object_mut() else {
                    continue;
                };
                if !wants_node_ports {
                    pm.remove("nodePort");
                    continue;
                }
                let proto = pm
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string();
                let port = pm.get("port").and_then(Value::as_u64);
                let requested = pm
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .filter(|n| *n != 0);
                let had = old_ports
                    .iter()
                    .find(|op| {
                        op.get("port").and_then(Value::as_u64) == port
                            && op.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == proto
                    })
                    .and_then(|op| op.get("nodePort").and_then(Value::as_u64));
                let np = match requested {
                    Some(n) => {
                        let n16 = n as u16;
                        if n < self.node_ports.0 as u64 || n > self.node_ports.1 as u64 {
                            errs.push(FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                json!(n),
                                format!(
                                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                                    self.node_ports.0, self.node_ports.1
                                ),
                            ));
                            continue;
                        }
                        if Some(n) != had && taken.contains(&(n16, proto.clone())) {
                            errs.push(FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                json!(n),
                                "provided port is already allocated",
                            ));
                            continue;
                        }
                        n16
                    }
                    None => match had {
                        Some(h) => h as u16,
                        None => match self.pick_port(&taken, &proto) {
                            Some(n) => n,
                            None => {
                                errs.push(FieldError::invalid(
                                    format!("spec.ports[{i}].nodePort"),
                                    json!(0),
                                    "failed to allocate a nodePort: range is full",
                                ));
                                continue;
                            }
                        },
                    },
                };
                taken.insert((np, proto.clone()));
                if !dry_run && Some(np as u64) != had {
                    self.reserved_ports
                        .lock()
                        .unwrap()
                        .insert((np, proto.clone()), Instant::now());
                }
                pm.insert("nodePort".into(), json!(np));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// A free address, preferring the upper part of the range so the low addresses stay free
    /// for Services that ask for a specific one (the DNS service's .10), as upstream does.
    fn pick_ip(&self, used: &InUse) -> Option<Ipv4Addr> {
        use rand::Rng;
        let base = u32::from(self.cidr.network());
        let size = 1u64 << (32 - self.cidr.prefix_len());
        if size < 4 {
            return None;
        }
        let first = 1u64; // skip the network address
        let last = size - 2; // and the broadcast address
        let static_band = (size / 16).clamp(16, 256).min(last);
        let try_band = |lo: u64, hi: u64| -> Option<Ipv4Addr> {
            if lo > hi {
                return None;
            }
            let n = hi - lo + 1;
            let start = rand::rng().random_range(0..n);
            (0..n)
                .map(|i| Ipv4Addr::from(base + (lo + (start + i) % n) as u32))
                .find(|ip| !used.ips.contains(ip))
        };
        try_band(static_band + 1, last).or_else(|| try_band(first, static_band.min(last)))
    }

    fn pick_port(&self, taken: &HashSet<(u16, String)>, proto: &str) -> Option<u16> {
        use rand::Rng;
        let (lo, hi) = self.node_ports;
        let n = (hi - lo) as u32 + 1;
        let start = rand::rng().random_range(0..n);
        (0..n)
            .map(|i| lo + ((start + i) % n) as u16)
            .find(|p| !taken.contains(&(*p, proto.to_string())))
    }
}
