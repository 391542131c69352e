//! Server-side `Table` columns and cells, as upstream's printers
//! (`pkg/printers/internalversion/printers.go`). The server always renders the wide cells;
//! kubectl hides columns with `priority > 0` unless asked for `-o wide`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::selector::{from_label_selector, LabelSelector};

/// One column definition (`metav1.TableColumnDefinition`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
const AGE: Column = col("Age", "string", AGE_DESC);
const CREATED_AT: Column = col("Created At", "date", AGE_DESC);

/// The columns upstream prints for a resource; unknown resources (custom resources without
/// printer columns) get `Name` and `Age`.
pub fn columns(group: &str, plural: &str) -> Vec<Column> {
    let s = "string";
    let i = "integer";
    match (group, plural) {
        ("", "pods") => vec![
            NAME,
            col("Ready", s, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", s, "The aggregate status of the containers in this pod."),
            col("Restarts", s, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            wide("IP", s, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            wide("Node", s, "NodeName indicates in which node this pod is scheduled."),
            wide("Nominated Node", s, "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
            wide("Readiness Gates", s, "If specified, all readiness gates will be evaluated for pod readiness."),
        ],
        ("", "podtemplates") => vec![
            NAME,
            col("Containers", s, CONTAINERS_DESC),
            col("Images", s, IMAGES_DESC),
            col("Pod Labels", s, "The labels for the pod template."),
        ],
        ("", "replicationcontrollers") | ("apps", "replicasets") => vec![
            NAME,
            col("Desired", i, "Replicas is the number of desired replicas."),
            col("Current", i, "Replicas is the most recently observed number of replicas."),
            col("Ready", i, "The number of ready replicas for this replica set."),
            AGE,
            wide("Containers", s, CONTAINERS_DESC),
            wide("Images", s, IMAGES_DESC),
            wide("Selector", s, "Selector is a label query over pods that should match the replica count."),
        ],
        ("apps", "deployments") => vec![
            NAME,
            col("Ready", s, "Number of the pod with ready state"),
            col("Up-to-date", s, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            col("Available", s, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            wide("Containers", s, CONTAINERS_DESC),
            wide("Images", s, IMAGES_DESC),
            wide("Selector", s, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
        ],
        ("apps", "statefulsets") => vec![
            NAME,
            col("Ready", s, "Number of the pod with ready state"),
            AGE,
            wide("Containers", s, CONTAINERS_DESC),
            wide("Images", s, IMAGES_DESC),
        ],
        ("apps", "daemonsets") => vec![
            NAME,
            col("Desired", i, "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
            col("Current", i, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
            col("Ready", i, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            col("Up-to-date", i, "The total number of nodes that are running updated daemon pod"),
            col("Available", i, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            col("Node Selector", s, "NodeSelector is a selector which must be true for the pod to fit on a node."),
            AGE,
            wide("Containers", s, CONTAINERS_DESC),
            wide("Images", s, IMAGES_DESC),
            wide("Selector", s, "A label query over pods that are managed by the daemon set."),
        ],
        ("apps", "controllerrevisions") => vec![
            NAME,
            col("Controller", s, "Controller of the object"),
            col("Revision", s, "Revision indicates the revision of the state represented by Data."),
            AGE,
        ],
        ("batch", "jobs") => vec![
            NAME,
            col("Status", s, "Status of the job."),
            col("Completions", s, "The number of pods which reached phase Succeeded."),
            col("Duration", s, "Time required to complete the job."),
            AGE,
            wide("Containers", s, CONTAINERS_DESC),
            wide("Images", s, IMAGES_DESC),
            wide("Selector", s, "A label query over pods that should match the pod count."),
        ],
        ("batch", "cronjobs") => vec![
            NAME,
            col("Schedule", s, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            col("Timezone", s, "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
            col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
            col("Active", i, "A list of pointers to currently running jobs."),
            col("Last Schedule", s, "Information when was the last time the job was successfully scheduled."),
            AGE,
            wide("Containers", s, CONTAINERS_DESC),
            wide("Images", s, IMAGES_DESC),
            wide("Selector", s, "A label query over pods that should match the pod count."),
        ],
        ("", "services") => vec![
            NAME,
            col("Type", s, "type determines how the Service is exposed."),
            col("Cluster-IP", s, "clusterIP is the IP address of the service and is usually assigned randomly."),
            col("External-IP", s, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            col("Port(s)", s, "The list of ports that are exposed by this service."),
            AGE,
            wide("Selector", s, "Route service traffic to pods with label keys and values matching this selector."),
        ],
        ("", "endpoints") => vec![
            NAME,
            col("Endpoints", s, "The set of all endpoints is the union of all subsets."),
            AGE,
        ],
        ("discovery.k8s.io", "endpointslices") => vec![
            NAME,
            col("AddressType", s, "addressType specifies the type of address carried by this EndpointSlice."),
            col("Ports", s, "ports specifies the list of network ports exposed by each endpoint in this slice."),
            col("Endpoints", s, "endpoints is a list of unique endpoints in this slice."),
            AGE,
        ],
        ("", "nodes") => vec![
            NAME,
            col("Status", s, "The status of the node"),
            col("Roles", s, "The roles of the node"),
            AGE,
            col("Version", s, "Kubelet Version reported by the node."),
            wide("Internal-IP", s, "List of addresses reachable to the node."),
            wide("External-IP", s, "List of addresses reachable to the node."),
            wide("OS-Image", s, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            wide("Kernel-Version", s, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            wide("Container-Runtime", s, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            col("Last Seen", s, "The time at which the most recent occurrence of this event was recorded."),
            col("Type", s, "Type of this event (Normal, Warning), new types could be added in the future"),
            col("Reason", s, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            col("Object", s, "The object that this event is about."),
            wide("Subobject", s, "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
            wide("Source", s, "The component reporting this event."),
            col("Message", s, "A human-readable description of the status of this operation."),
            wide("First Seen", s, "The time at which the event was first recorded."),
            wide("Count", s, "The number of times this event has occurred."),
            Column { priority: 1, ..NAME },
        ],
        ("", "namespaces") => vec![NAME, col("Status", s, "The status of the namespace"), AGE],
        ("", "secrets") => vec![
            NAME,
            col("Type", s, "Used to facilitate programmatic handling of secret data."),
            col("Data", s, "Data contains the secret data."),
            AGE,
        ],
        ("", "configmaps") => vec![
            NAME,
            col("Data", s, "Data contains the configuration data."),
            AGE,
        ],
        ("", "serviceaccounts") => vec![
            NAME,
            col("Secrets", s, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
            AGE,
        ],
        ("", "persistentvolumes") => vec![
            NAME,
            col("Capacity", s, "capacity is the description of the persistent volume's resources and capacity."),
            col("Access Modes", s, "accessModes contains all ways the volume can be mounted."),
            col("Reclaim Policy", s, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
            col("Status", s, "phase indicates if a volume is available, bound to a claim, or released by a claim."),
            col("Claim", s, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
            col("StorageClass", s, "StorageClass of the pv"),
            col("VolumeAttributesClass", s, "VolumeAttributesClass of the pv"),
            col("Reason", s, "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
            AGE,
            wide("VolumeMode", s, "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
        ],
        ("", "persistentvolumeclaims") => vec![
            NAME,
            col("Status", s, "phase represents the current phase of PersistentVolumeClaim."),
            col("Volume", s, "volumeName is the binding reference to the PersistentVolume backing this claim."),
            col("Capacity", s, "capacity represents the actual resources of the underlying volume."),
            col("Access Modes", s, "accessModes contains the actual access modes the volume backing the PVC has."),
            col("StorageClass", s, "StorageClass of the pvc"),
            col("VolumeAttributesClass", s, "VolumeAttributesClass of the pvc"),
            AGE,
            wide("VolumeMode", s, "volumeMode defines what type of volume is required by the claim."),
        ],
        ("", "limitranges") => vec![NAME, CREATED_AT],
        ("", "resourcequotas") => vec![
            NAME,
            AGE,
            col("Request", s, "Request represents a minimum amount of cpu/memory that a container may consume."),
            col("Limit", s, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        ],
        ("networking.k8s.io", "ingresses") => vec![
            NAME,
            col("Class", s, "The name of the IngressClass resource that should be used for additional configuration"),
            col("Hosts", s, "Hosts that incoming requests are matched against before the ingress rule"),
            col("Address", s, "Address is a list containing ingress points for the load-balancer"),
            col("Ports", s, "Ports of TLS configurations that open"),
            AGE,
        ],
        ("networking.k8s.io", "ingressclasses") => vec![
            NAME,
            col("Controller", s, "Controller that is responsible for handling this class"),
            col("Parameters", s, "A reference to a resource with additional parameters"),
            AGE,
        ],
        ("networking.k8s.io", "networkpolicies") => vec![
            NAME,
            col("Pod-Selector", s, "Selects the pods to which this NetworkPolicy object applies."),
            AGE,
        ],
        ("coordination.k8s.io", "leases") => vec![
            NAME,
            col("Holder", s, "holderIdentity contains the identity of the holder of a current lease."),
            AGE,
        ],
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => vec![NAME, CREATED_AT],
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => vec![
            NAME,
            col("Role", s, "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
            AGE,
            wide("Users", s, "Users in the roleBinding"),
            wide("Groups", s, "Groups in the roleBinding"),
            wide("ServiceAccounts", s, "ServiceAccounts in the roleBinding"),
        ],
        ("policy", "poddisruptionbudgets") => vec![
            NAME,
            col("Min Available", s, "The minimum number of pods that must be available."),
            col("Max Unavailable", s, "The maximum number of pods that may be unavailable."),
            col("Allowed Disruptions", i, "Calculated number of pods that may be disrupted at this time."),
            AGE,
        ],
        ("scheduling.k8s.io", "priorityclasses") => vec![
            NAME,
            col("Value", i, "Value is the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
            col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
            AGE,
            col("PreemptionPolicy", s, "preemptionPolicy is the Policy for preempting pods with lower priority."),
        ],
        ("storage.k8s.io", "storageclasses") => vec![
            NAME,
            col("Provisioner", s, "provisioner indicates the type of the provisioner."),
            col("ReclaimPolicy", s, "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
            col("VolumeBindingMode", s, "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
            col("AllowVolumeExpansion", s, "allowVolumeExpansion shows whether the storage class allow volume expand."),
            AGE,
        ],
        ("autoscaling", "horizontalpodautoscalers") => vec![
            NAME,
            col("Reference", s, "scaleTargetRef points to the target resource to scale."),
            col("Targets", s, "metrics contains the specifications for which to use to calculate the desired replica count."),
            col("MinPods", s, "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
            col("MaxPods", s, "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
            col("Replicas", s, "currentReplicas is current number of replicas of pods managed by this autoscaler."),
            AGE,
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => vec![NAME, CREATED_AT],
        _ => vec![NAME, AGE],
    }
}

/// `columnDefinitions` for a Table.
/// The column definitions for a resource: its CRD's printer columns for custom resources,
/// upstream's printer columns otherwise.
pub fn columns_json_for(info: &crate::resources::ResourceInfo) -> Value {
    match &info.custom {
        Some(c) => crate::crd::columns_json(c),
        None => column_definitions_json(&columns(&info.group, &info.plural)),
    }
}

/// The cells of one object's row, matching [`columns_json_for`].
pub fn cells_for(
    info: &crate::resources::ResourceInfo,
    obj: &Value,
    now: DateTime<Utc>,
) -> Vec<Value> {
    match &info.custom {
        Some(c) => crate::crd::cells(c, obj, now),
        None => cells(&info.group, &info.plural, obj, now),
    }
}

pub fn column_definitions_json(cols: &[Column]) -> Value {
    Value::Array(
        cols.iter()
            .map(|c| {
                json!({"name": c.name, "type": c.type_, "format": c.format,
                       "description": c.description, "priority": c.priority})
            })
            .collect(),
    )
}

/// The cells of one row, one per column of [`columns`].
pub fn cells(group: &str, plural: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let r = Row { obj, now };
    match (group, plural) {
        ("", "pods") => r.pod(),
        ("", "podtemplates") => {
            let (names, images) = container_cells(obj.pointer("/template/spec/containers"));
            vec![
                r.name(),
                json!(names),
                json!(images),
                json!(format_labels(obj.pointer("/template/metadata/labels"))),
            ]
        }
        ("", "replicationcontrollers") | ("apps", "replicasets") => {
            let (names, images) = container_cells(obj.pointer("/spec/template/spec/containers"));
            let selector = if group.is_empty() {
                format_labels(obj.pointer("/spec/selector"))
            } else {
                selector_string(obj.pointer("/spec/selector"))
            };
            vec![
                r.name(),
                json!(r.int("/spec/replicas")),
                json!(r.int("/status/replicas")),
                json!(r.int("/status/readyReplicas")),
                r.age(),
                json!(names),
                json!(images),
                json!(selector),
            ]
        }
        ("apps", "deployments") => {
            let (names, images) = container_cells(obj.pointer("/spec/template/spec/containers"));
            vec![
                r.name(),
                json!(format!(
                    "{}/{}",
                    r.int("/status/readyReplicas"),
                    r.int("/spec/replicas")
                )),
                json!(r.int("/status/updatedReplicas")),
                json!(r.int("/status/availableReplicas")),
                r.age(),
                json!(names),
                json!(images),
                json!(selector_string(obj.pointer("/spec/selector"))),
            ]
        }
        ("apps", "statefulsets") => {
            let (names, images) = container_cells(obj.pointer("/spec/template/spec/containers"));
            vec![
                r.name(),
                json!(format!(
                    "{}/{}",
                    r.int("/status/readyReplicas"),
                    r.int("/spec/replicas")
                )),
                r.age(),
                json!(names),
                json!(images),
            ]
        }
        ("apps", "daemonsets") => {
            let (names, images) = container_cells(obj.pointer("/spec/template/spec/containers"));
            vec![
                r.name(),
                json!(r.int("/status/desiredNumberScheduled")),
                json!(r.int("/status/currentNumberScheduled")),
                json!(r.int("/status/numberReady")),
                json!(r.int("/status/updatedNumberScheduled")),
                json!(r.int("/status/numberAvailable")),
                json!(format_labels(
                    obj.pointer("/spec/template/spec/nodeSelector")
                )),
                r.age(),
                json!(names),
                json!(images),
                json!(selector_string(obj.pointer("/spec/selector"))),
            ]
        }
        ("apps", "controllerrevisions") => {
            let controller = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| {
                    refs.iter()
                        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
                })
                .map(|o| {
                    let api_version = str_at(o, "/apiVersion");
                    let kind = str_at(o, "/kind");
                    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
                    let gk = if group.is_empty() {
                        kind.to_string()
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{}/{}", gk.to_lowercase(), str_at(o, "/name"))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                r.name(),
                json!(controller),
                json!(r.int("/revision")),
                r.age(),
            ]
        }
        ("batch", "jobs") => r.job(),
        ("batch", "cronjobs") => {
            let (names, images) =
                container_cells(obj.pointer("/spec/jobTemplate/spec/template/spec/containers"));
            let last = match obj.pointer("/status/lastScheduleTime") {
                Some(Value::String(t)) => r.since(t),
                _ => "<none>".to_string(),
            };
            let tz = obj
                .pointer("/spec/timeZone")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            vec![
                r.name(),
                json!(r.str("/spec/schedule")),
                json!(tz),
                json!(suspend),
                json!(r.len("/status/active")),
                json!(last),
                r.age(),
                json!(names),
                json!(images),
                json!(selector_string(
                    obj.pointer("/spec/jobTemplate/spec/selector")
                )),
            ]
        }
        ("", "services") => r.service(),
        ("", "endpoints") => vec![r.name(), json!(format_endpoints(obj)), r.age()],
        ("discovery.k8s.io", "endpointslices") => {
            let ports: Vec<String> = array(obj.get("ports"))
                .iter()
                .map(
                    |p| match (p.get("port").and_then(Value::as_i64), p.get("name")) {
                        (Some(n), _) => n.to_string(),
                        (None, Some(Value::String(name))) => name.clone(),
                        _ => "*".to_string(),
                    },
                )
                .collect();
            let addrs: Vec<String> = array(obj.get("endpoints"))
                .iter()
                .flat_map(|e| array(e.get("addresses")))
                .map(|a| a.as_str().unwrap_or_default().to_string())
                .collect();
            vec![
                r.name(),
                json!(r.str("/addressType")),
                json!(list_with_more(&ports)),
                json!(list_with_more(&addrs)),
                r.age(),
            ]
        }
        ("", "nodes") => r.node(),
        ("", "events") | ("events.k8s.io", "events") => r.event(),
        ("", "namespaces") => vec![r.name(), json!(r.str("/status/phase")), r.age()],
        ("", "secrets") => vec![
            r.name(),
            json!(r.str("/type")),
            json!(r.map_len("/data")),
            r.age(),
        ],
        ("", "configmaps") => vec![
            r.name(),
            json!(r.map_len("/data") + r.map_len("/binaryData")),
            r.age(),
        ],
        ("", "serviceaccounts") => vec![r.name(), json!(r.len("/secrets")), r.age()],
        ("", "persistentvolumes") => r.persistent_volume(),
        ("", "persistentvolumeclaims") => r.persistent_volume_claim(),
        ("", "resourcequotas") => {
            let (req, lim) = quota_strings(obj);
            vec![r.name(), r.age(), json!(req), json!(lim)]
        }
        ("networking.k8s.io", "ingresses") => {
            let class = obj
                .pointer("/spec/ingressClassName")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            let rules = array(obj.pointer("/spec/rules"));
            let mut hosts = Vec::new();
            let mut more = false;
            for rule in rules {
                if hosts.len() == 4 {
                    more = true;
                }
                let h = str_at(rule, "/host");
                if !more && !h.is_empty() {
                    hosts.push(h.to_string());
                }
            }
            let hosts = if hosts.is_empty() {
                "*".to_string()
            } else if more {
                format!("{} + {} more...", hosts.join(","), rules.len() - 4)
            } else {
                hosts.join(",")
            };
            let ports = if r.len("/spec/tls") > 0 {
                "80, 443"
            } else {
                "80"
            };
            vec![
                r.name(),
                json!(class),
                json!(hosts),
                json!(load_balancer_addresses(
                    obj.pointer("/status/loadBalancer/ingress")
                )),
                json!(ports),
                r.age(),
            ]
        }
        ("networking.k8s.io", "ingressclasses") => {
            let params = match obj.pointer("/spec/parameters") {
                Some(p) if p.is_object() => {
                    let group = str_at(p, "/apiGroup");
                    let kind = str_at(p, "/kind");
                    let gk = if group.is_empty() {
                        kind.to_string()
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{gk}/{}", str_at(p, "/name"))
                }
                _ => "<none>".to_string(),
            };
            vec![
                r.name(),
                json!(r.str("/spec/controller")),
                json!(params),
                r.age(),
            ]
        }
        ("networking.k8s.io", "networkpolicies") => {
            let sel = match obj.pointer("/spec/podSelector") {
                Some(v) => match from_label_selector(v) {
                    Ok(s) if s.to_string().is_empty() => "<none>".to_string(),
                    Ok(s) => s.to_string(),
                    Err(_) => "<error>".to_string(),
                },
                None => "<none>".to_string(),
            };
            vec![r.name(), json!(sel), r.age()]
        }
        ("coordination.k8s.io", "leases") => {
            vec![r.name(), json!(r.str("/spec/holderIdentity")), r.age()]
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            let role = format!("{}/{}", r.str("/roleRef/kind"), r.str("/roleRef/name"));
            let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
            for s in array(obj.get("subjects")) {
                let name = str_at(s, "/name").to_string();
                match str_at(s, "/kind") {
                    "User" => users.push(name),
                    "Group" => groups.push(name),
                    "ServiceAccount" => sas.push(format!("{}:{name}", str_at(s, "/namespace"))),
                    _ => {}
                }
            }
            vec![
                r.name(),
                json!(role),
                r.age(),
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        ("policy", "poddisruptionbudgets") => {
            let int_or_na = |p: &str| match obj.pointer(p) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => "N/A".to_string(),
            };
            vec![
                r.name(),
                json!(int_or_na("/spec/minAvailable")),
                json!(int_or_na("/spec/maxUnavailable")),
                json!(r.int("/status/disruptionsAllowed")),
                r.age(),
            ]
        }
        ("scheduling.k8s.io", "priorityclasses") => vec![
            r.name(),
            json!(r.int("/value")),
            json!(obj
                .get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            r.age(),
            json!(obj
                .get("preemptionPolicy")
                .and_then(Value::as_str)
                .unwrap_or("PreemptLowerPriority")),
        ],
        ("storage.k8s.io", "storageclasses") => {
            let annotations = obj.pointer("/metadata/annotations");
            let is_default = [
                "storageclass.kubernetes.io/is-default-class",
                "storageclass.beta.kubernetes.io/is-default-class",
            ]
            .iter()
            .any(|k| annotations.and_then(|a| a.get(*k)).and_then(Value::as_str) == Some("true"));
            let mut name = r.str("/metadata/name").to_string();
            if is_default {
                name.push_str(" (default)");
            }
            let or = |p: &str, d: &'static str| {
                obj.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or(d)
                    .to_string()
            };
            vec![
                json!(name),
                json!(r.str("/provisioner")),
                json!(or("/reclaimPolicy", "Delete")),
                json!(or("/volumeBindingMode", "Immediate")),
                json!(obj
                    .get("allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)),
                r.age(),
            ]
        }
        ("autoscaling", "horizontalpodautoscalers") => r.hpa(),
        ("", "limitranges")
        | ("rbac.authorization.k8s.io", "roles" | "clusterroles")
        | ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![r.name(), json!(r.str("/metadata/creationTimestamp"))]
        }
        _ => vec![r.name(), r.age()],
    }
}

/// A Table's row for an object: cells plus the object as `PartialObjectMetadata` (or the
/// full object when `include_object` is `Object`, or none for `None`), as kubectl expects.
pub fn row_json(
    group: &str,
    plural: &str,
    obj: &Value,
    now: DateTime<Utc>,
    include_object: &str,
) -> Value {
    let mut row = json!({"cells": cells(group, plural, obj, now)});
    match include_object {
        "None" => {}
        "Object" => row["object"] = obj.clone(),
        _ => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            })
        }
    }
    row
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------------------------

/// Upstream's `duration.HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when missing.
pub fn age(timestamp: Option<&str>, now: DateTime<Utc>) -> String {
    match timestamp.and_then(parse_time) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn array(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `labels.FormatLabels`: `k=v,...` sorted by key, `<none>` when empty.
fn format_labels(v: Option<&Value>) -> String {
    let Some(m) = v.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// `LabelSelectorAsSelector(sel).String()` (empty for none).
fn selector_string(v: Option<&Value>) -> String {
    match v {
        None => LabelSelector::nothing().to_string(),
        Some(v) => from_label_selector(v)
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "<error>".into()),
    }
}

/// `layoutContainerCells`: names and images joined by commas.
fn container_cells(v: Option<&Value>) -> (String, String) {
    let cs = array(v);
    let names: Vec<&str> = cs.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| str_at(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn list_with_more(list: &[String]) -> String {
    let max = 3;
    let shown = list.iter().take(max).cloned().collect::<Vec<_>>().join(",");
    if list.len() > max {
        format!("{shown} + {} more...", list.len() - max)
    } else if shown.is_empty() {
        "<unset>".into()
    } else {
        shown
    }
}

fn load_balancer_addresses(v: Option<&Value>) -> String {
    array(v)
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, "/ip");
            let host = str_at(i, "/hostname");
            if !ip.is_empty() {
                Some(ip.to_string())
            } else if !host.is_empty() {
                Some(host.to_string())
            } else {
                None
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn join_host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `formatEndpoints` with no port filter.
fn format_endpoints(obj: &Value) -> String {
    let subsets = array(obj.get("subsets"));
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let mut list = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addrs = array(ss.get("addresses"));
        let ports = array(ss.get("ports"));
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(str_at(a, "/ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                list.push(join_host_port(str_at(a, "/ip"), port));
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - max)
    } else {
        ret
    }
}

fn access_modes(v: Option<&Value>) -> String {
    let modes: Vec<&str> = array(v).iter().filter_map(Value::as_str).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| modes.contains(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn quota_strings(obj: &Value) -> (String, String) {
    let hard = obj.pointer("/status/hard").or(obj.pointer("/spec/hard"));
    let used = obj.pointer("/status/used");
    let mut keys: Vec<&String> = hard
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    keys.sort();
    let (mut req, mut lim) = (Vec::new(), Vec::new());
    for k in keys {
        let h = hard
            .and_then(|h| h.get(k))
            .map(quantity_str)
            .unwrap_or_default();
        let u = used
            .and_then(|u| u.get(k))
            .map(quantity_str)
            .unwrap_or_else(|| "0".into());
        let s = format!("{k}: {u}/{h}");
        if k.starts_with("limits.") {
            lim.push(s);
        } else {
            req.push(s);
        }
    }
    (req.join(", "), lim.join(", "))
}

fn quantity_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct Row<'a> {
    obj: &'a Value,
    now: DateTime<Utc>,
}

impl Row<'_> {
    fn str(&self, ptr: &str) -> &str {
        str_at(self.obj, ptr)
    }

    fn int(&self, ptr: &str) -> i64 {
        self.obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
    }

    fn len(&self, ptr: &str) -> i64 {
        array(self.obj.pointer(ptr)).len() as i64
    }

    fn map_len(&self, ptr: &str) -> i64 {
        self.obj
            .pointer(ptr)
            .and_then(Value::as_object)
            .map_or(0, |m| m.len() as i64)
    }

    fn name(&self) -> Value {
        json!(self.str("/metadata/name"))
    }

    fn since(&self, t: &str) -> String {
        age(Some(t), self.now)
    }

    fn age(&self) -> Value {
        json!(age(
            self.obj
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str),
            self.now
        ))
    }

    fn deleting(&self) -> bool {
        self.obj
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
    }

    fn pod(&self) -> Vec<Value> {
        let obj = self.obj;
        let spec_containers = array(obj.pointer("/spec/containers"));
        let init_specs = array(obj.pointer("/spec/initContainers"));
        let restartable = |name: &str| {
            init_specs
                .iter()
                .any(|c| str_at(c, "/name") == name && str_at(c, "/restartPolicy") == "Always")
        };
        let total = spec_containers.len()
            + init_specs
                .iter()
                .filter(|c| str_at(c, "/restartPolicy") == "Always")
                .count();
        let mut ready = 0;
        let mut restarts = 0i64;
        let mut sidecar_restarts = 0i64;
        let mut last_restart: Option<DateTime<Utc>> = None;
        let mut last_sidecar_restart: Option<DateTime<Utc>> = None;
        let phase = self.str("/status/phase");
        let mut reason = phase.to_string();
        let status_reason = self.str("/status/reason");
        if !status_reason.is_empty() {
            reason = status_reason.to_string();
        }
        let conditions = array(obj.pointer("/status/conditions"));
        if conditions.iter().any(|c| {
            str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated"
        }) {
            reason = "SchedulingGated".into();
        }
        let finished = |c: &Value| {
            c.pointer("/lastState/terminated/finishedAt")
                .and_then(Value::as_str)
                .and_then(parse_time)
        };
        let later = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };

        let mut initializing = false;
        let init_statuses = array(obj.pointer("/status/initContainerStatuses"));
        for (i, c) in init_statuses.iter().enumerate() {
            let rc = c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            restarts += rc;
            last_restart = later(last_restart, finished(c));
            let is_sidecar = restartable(str_at(c, "/name"));
            if is_sidecar {
                sidecar_restarts += rc;
                last_sidecar_restart = later(last_sidecar_restart, finished(c));
            }
            let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
            let waiting_reason = str_at(c, "/state/waiting/reason");
            let exit_code = terminated
                .and_then(|t| t.get("exitCode"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if terminated.is_some() && exit_code == 0 {
                continue;
            }
            if is_sidecar && c.get("started").and_then(Value::as_bool) == Some(true) {
                if c.get("ready").and_then(Value::as_bool) == Some(true) {
                    ready += 1;
                }
                continue;
            }
            if let Some(t) = terminated {
                let treason = str_at(t, "/reason");
                let signal = t.get("signal").and_then(Value::as_i64).unwrap_or(0);
                reason = if !treason.is_empty() {
                    format!("Init:{treason}")
                } else if signal != 0 {
                    format!("Init:Signal:{signal}")
                } else {
                    format!("Init:ExitCode:{exit_code}")
                };
            } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
                reason = format!("Init:{waiting_reason}");
            } else {
                reason = format!("Init:{i}/{}", init_specs.len());
            }
            initializing = true;
            break;
        }

        let initialized = conditions
            .iter()
            .any(|c| str_at(c, "/type") == "Initialized" && str_at(c, "/status") == "True");
        if !initializing || initialized {
            restarts = sidecar_restarts;
            last_restart = last_sidecar_restart;
            let mut has_running = false;
            for c in array(obj.pointer("/status/containerStatuses")).iter().rev() {
                restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
                last_restart = later(last_restart, finished(c));
                let waiting_reason = str_at(c, "/state/waiting/reason");
                let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
                let running = c.pointer("/state/running").is_some_and(Value::is_object);
                if !waiting_reason.is_empty() {
                    reason = waiting_reason.to_string();
                } else if let Some(t) = terminated {
                    let treason = str_at(t, "/reason");
                    let signal = t.get("signal").and_then(Value::as_i64).unwrap_or(0);
                    let code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
                    reason = if !treason.is_empty() {
                        treason.to_string()
                    } else if signal != 0 {
                        format!("Signal:{signal}")
                    } else {
                        format!("ExitCode:{code}")
                    };
                } else if c.get("ready").and_then(Value::as_bool) == Some(true) && running {
                    has_running = true;
                    ready += 1;
                }
            }
            if reason == "Completed" && has_running {
                let pod_ready = conditions
                    .iter()
                    .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True");
                reason = if pod_ready { "Running" } else { "NotReady" }.into();
            }
        }

        if self.deleting() && status_reason == "NodeLost" {
            reason = "Unknown".into();
        } else if self.deleting() && phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }

        let restarts_str = match last_restart {
            Some(t) if restarts != 0 => {
                format!("{restarts} ({} ago)", human_duration(self.now - t))
            }
            _ => restarts.to_string(),
        };

        let ip = match self.str("/status/podIPs/0/ip") {
            "" => match self.str("/status/podIP") {
                "" => "<none>",
                ip => ip,
            },
            ip => ip,
        };
        let none_if_empty = |s: &str| {
            if s.is_empty() {
                "<none>".to_string()
            } else {
                s.to_string()
            }
        };
        let gates = array(obj.pointer("/spec/readinessGates"));
        let readiness_gates = if gates.is_empty() {
            "<none>".to_string()
        } else {
            let true_count = gates
                .iter()
                .filter(|g| {
                    let t = str_at(g, "/conditionType");
                    conditions
                        .iter()
                        .find(|c| str_at(c, "/type") == t)
                        .is_some_and(|c| str_at(c, "/status") == "True")
                })
                .count();
            format!("{true_count}/{}", gates.len())
        };
        vec![
            self.name(),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts_str),
            self.age(),
            json!(ip),
            json!(none_if_empty(self.str("/spec/nodeName"))),
            json!(none_if_empty(self.str("/status/nominatedNodeName"))),
            json!(readiness_gates),
        ]
    }

    fn job(&self) -> Vec<Value> {
        let obj = self.obj;
        let succeeded = self.int("/status/succeeded");
        let completions = match obj.pointer("/spec/completions").and_then(Value::as_i64) {
            Some(c) => format!("{succeeded}/{c}"),
            None => {
                let p = self.int("/spec/parallelism");
                if p > 1 {
                    format!("{succeeded}/1 of {p}")
                } else {
                    format!("{succeeded}/1")
                }
            }
        };
        let start = obj
            .pointer("/status/startTime")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let end = obj
            .pointer("/status/completionTime")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let duration = match (start, end) {
            (None, _) => String::new(),
            (Some(s), None) => human_duration(self.now - s),
            (Some(s), Some(e)) => human_duration(e - s),
        };
        let conds = array(obj.pointer("/status/conditions"));
        let has = |t: &str| {
            conds
                .iter()
                .any(|c| str_at(c, "/type") == t && str_at(c, "/status") == "True")
        };
        let status = if has("Complete") {
            "Complete"
        } else if has("Failed") {
            "Failed"
        } else if self.deleting() {
            "Terminating"
        } else if has("Suspended") {
            "Suspended"
        } else if has("FailureTarget") {
            "FailureTarget"
        } else if has("SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else {
            "Running"
        };
        let (names, images) = container_cells(obj.pointer("/spec/template/spec/containers"));
        vec![
            self.name(),
            json!(status),
            json!(completions),
            json!(duration),
            self.age(),
            json!(names),
            json!(images),
            json!(selector_string(obj.pointer("/spec/selector"))),
        ]
    }

    fn service(&self) -> Vec<Value> {
        let obj = self.obj;
        let ty = self.str("/spec/type");
        let cluster_ip = match self.str("/spec/clusterIPs/0") {
            "" => match self.str("/spec/clusterIP") {
                "" => "<none>",
                ip => ip,
            },
            ip => ip,
        };
        let external: Vec<String> = array(obj.pointer("/spec/externalIPs"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let external_ip = match ty {
            "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
            "ClusterIP" | "NodePort" => "<none>".to_string(),
            "LoadBalancer" => {
                let lb = load_balancer_addresses(obj.pointer("/status/loadBalancer/ingress"));
                if !external.is_empty() {
                    let mut all: Vec<String> = if lb.is_empty() {
                        Vec::new()
                    } else {
                        lb.split(',').map(str::to_string).collect()
                    };
                    all.extend(external);
                    all.join(",")
                } else if !lb.is_empty() {
                    lb
                } else {
                    "<pending>".to_string()
                }
            }
            "ExternalName" => self.str("/spec/externalName").to_string(),
            _ => "<unknown>".to_string(),
        };
        let ports: Vec<String> = array(obj.pointer("/spec/ports"))
            .iter()
            .map(|p| {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                let proto = str_at(p, "/protocol");
                match p.get("nodePort").and_then(Value::as_i64) {
                    Some(np) if np > 0 => format!("{port}:{np}/{proto}"),
                    _ => format!("{port}/{proto}"),
                }
            })
            .collect();
        let ports = if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        };
        vec![
            self.name(),
            json!(ty),
            json!(cluster_ip),
            json!(external_ip),
            json!(ports),
            self.age(),
            json!(format_labels(obj.pointer("/spec/selector"))),
        ]
    }

    fn node(&self) -> Vec<Value> {
        let obj = self.obj;
        let mut status = Vec::new();
        if let Some(c) = array(obj.pointer("/status/conditions"))
            .iter()
            .rev()
            .find(|c| str_at(c, "/type") == "Ready")
        {
            status.push(if str_at(c, "/status") == "True" {
                "Ready"
            } else {
                "NotReady"
            });
        }
        if status.is_empty() {
            status.push("Unknown");
        }
        if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            status.push("SchedulingDisabled");
        }
        let mut roles = std::collections::BTreeSet::new();
        if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
            for (k, v) in labels {
                if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                    if !role.is_empty() {
                        roles.insert(role.to_string());
                    }
                } else if k == "kubernetes.io/role" {
                    if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                        roles.insert(v.to_string());
                    }
                }
            }
        }
        let roles = if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.into_iter().collect::<Vec<_>>().join(",")
        };
        let address = |ty: &str| {
            array(obj.pointer("/status/addresses"))
                .iter()
                .find(|a| str_at(a, "/type") == ty)
                .map(|a| str_at(a, "/address").to_string())
                .unwrap_or_else(|| "<none>".into())
        };
        let unknown = |p: &str| match self.str(p) {
            "" => "<unknown>".to_string(),
            s => s.to_string(),
        };
        vec![
            self.name(),
            json!(status.join(",")),
            json!(roles),
            self.age(),
            json!(self.str("/status/nodeInfo/kubeletVersion")),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(unknown("/status/nodeInfo/osImage")),
            json!(unknown("/status/nodeInfo/kernelVersion")),
            json!(unknown("/status/nodeInfo/containerRuntimeVersion")),
        ]
    }

    fn event(&self) -> Vec<Value> {
        let obj = self.obj;
        let ts = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        // core/v1 field names first, then events.k8s.io/v1 ones.
        let first_ts = ts("/firstTimestamp").or(ts("/deprecatedFirstTimestamp"));
        let first = match first_ts {
            Some(t) => self.since(t),
            None => age(ts("/eventTime"), self.now),
        };
        let mut last = match ts("/lastTimestamp").or(ts("/deprecatedLastTimestamp")) {
            Some(t) => self.since(t),
            None => first.clone(),
        };
        let mut count = obj
            .get("count")
            .or(obj.get("deprecatedCount"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some(series) = obj.get("series").filter(|s| s.is_object()) {
            last = age(
                series.get("lastObservedTime").and_then(Value::as_str),
                self.now,
            );
            count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
        } else if count == 0 {
            count = 1;
        }
        let involved = obj
            .get("involvedObject")
            .or(obj.get("regarding"))
            .cloned()
            .unwrap_or(json!({}));
        let kind = str_at(&involved, "/kind").to_lowercase();
        let iname = str_at(&involved, "/name");
        let target = if iname.is_empty() {
            kind
        } else {
            format!("{kind}/{iname}")
        };
        let first_non_empty = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_string()
            } else {
                a.to_string()
            }
        };
        let component = first_non_empty(
            self.str("/source/component"),
            &first_non_empty(
                self.str("/reportingController"),
                self.str("/reportingComponent"),
            ),
        );
        let host = first_non_empty(self.str("/source/host"), self.str("/reportingInstance"));
        let source = if host.is_empty() {
            component
        } else {
            format!("{component}, {host}")
        };
        let message = first_non_empty(self.str("/message"), self.str("/note"));
        vec![
            json!(last),
            json!(self.str("/type")),
            json!(self.str("/reason")),
            json!(target),
            json!(str_at(&involved, "/fieldPath")),
            json!(source),
            json!(message.trim()),
            json!(first),
            json!(count),
            self.name(),
        ]
    }

    fn persistent_volume(&self) -> Vec<Value> {
        let obj = self.obj;
        let claim = match obj.pointer("/spec/claimRef") {
            Some(c) if c.is_object() => {
                format!("{}/{}", str_at(c, "/namespace"), str_at(c, "/name"))
            }
            _ => String::new(),
        };
        let phase = if self.deleting() {
            "Terminating"
        } else {
            self.str("/status/phase")
        };
        let class = match self.str("/spec/storageClassName") {
            "" => str_at(
                obj,
                "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
            ),
            c => c,
        };
        let unset = |p: &str| match self.str(p) {
            "" => "<unset>".to_string(),
            s => s.to_string(),
        };
        vec![
            self.name(),
            json!(obj
                .pointer("/spec/capacity/storage")
                .map(quantity_str)
                .unwrap_or_else(|| "0".into())),
            json!(access_modes(obj.pointer("/spec/accessModes"))),
            json!(self.str("/spec/persistentVolumeReclaimPolicy")),
            json!(phase),
            json!(claim),
            json!(class),
            json!(unset("/spec/volumeAttributesClassName")),
            json!(self.str("/status/reason")),
            self.age(),
            json!(unset("/spec/volumeMode")),
        ]
    }

    fn persistent_volume_claim(&self) -> Vec<Value> {
        let obj = self.obj;
        let phase = if self.deleting() {
            "Terminating"
        } else {
            self.str("/status/phase")
        };
        let bound = !self.str("/spec/volumeName").is_empty();
        let (capacity, modes) = if bound {
            (
                obj.pointer("/status/capacity/storage")
                    .map(quantity_str)
                    .unwrap_or_else(|| "0".into()),
                access_modes(obj.pointer("/status/accessModes")),
            )
        } else {
            (String::new(), String::new())
        };
        let class = match self.str("/spec/storageClassName") {
            "" => str_at(
                obj,
                "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
            ),
            c => c,
        };
        let unset = |p: &str| match self.str(p) {
            "" => "<unset>".to_string(),
            s => s.to_string(),
        };
        vec![
            self.name(),
            json!(phase),
            json!(self.str("/spec/volumeName")),
            json!(capacity),
            json!(modes),
            json!(class),
            json!(unset("/spec/volumeAttributesClassName")),
            self.age(),
            json!(unset("/spec/volumeMode")),
        ]
    }

    fn hpa(&self) -> Vec<Value> {
        let obj = self.obj;
        let reference = format!(
            "{}/{}",
            self.str("/spec/scaleTargetRef/kind"),
            self.str("/spec/scaleTargetRef/name")
        );
        let current = array(obj.pointer("/status/currentMetrics"));
        let mut targets = Vec::new();
        for (i, m) in array(obj.pointer("/spec/metrics")).iter().enumerate() {
            let ty = str_at(m, "/type");
            let key = match ty {
                "Resource" => "resource",
                "ContainerResource" => "containerResource",
                "Pods" => "pods",
                "Object" => "object",
                "External" => "external",
                _ => {
                    targets.push("<unknown type>".to_string());
                    continue;
                }
            };
            let target = m
                .pointer(&format!("/{key}/target"))
                .cloned()
                .unwrap_or(json!({}));
            let cur = current
                .get(i)
                .and_then(|c| c.pointer(&format!("/{key}/current")))
                .cloned();
            let s = if let Some(u) = target.get("averageUtilization").and_then(Value::as_i64) {
                let c = cur
                    .as_ref()
                    .and_then(|c| c.get("averageUtilization"))
                    .and_then(Value::as_i64)
                    .map(|c| format!("{c}%"))
                    .unwrap_or_else(|| "<unknown>".into());
                let name = str_at(m, &format!("/{key}/name"));
                format!("{name}: {c}/{u}%")
            } else {
                let field = if target.get("averageValue").is_some() {
                    "averageValue"
                } else {
                    "value"
                };
                let t = target.get(field).map(quantity_str).unwrap_or_default();
                let c = cur
                    .as_ref()
                    .and_then(|c| c.get(field))
                    .map(quantity_str)
                    .unwrap_or_else(|| "<unknown>".into());
                let prefix = if field == "averageValue" && ty != "Pods" {
                    " (avg)"
                } else {
                    ""
                };
                format!("{c}/{t}{prefix}")
            };
            targets.push(s);
        }
        let targets = if targets.is_empty() {
            "<none>".to_string()
        } else if targets.len() > 2 {
            format!(
                "{} + {} more...",
                targets[..2].join(", "),
                targets.len() - 2
            )
        } else {
            targets.join(", ")
        };
        let min = match obj.pointer("/spec/minReplicas").and_then(Value::as_i64) {
            Some(m) => m.to_string(),
            None => "<unset>".into(),
        };
        vec![
            self.name(),
            json!(reference),
            json!(targets),
            json!(min),
            json!(self.int("/spec/maxReplicas")),
            json!(self.int("/status/currentReplicas")),
            self.age(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    fn ago(secs: i64) -> String {
        (now() - chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    #[test]
    fn human_duration_matches_upstream_table() {
        let d = |s: i64| human_duration(chrono::Duration::seconds(s));
        assert_eq!(d(-2), "<invalid>");
        assert_eq!(d(-1), "0s");
        assert_eq!(d(0), "0s");
        assert_eq!(d(90), "90s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(120), "2m");
        assert_eq!(d(200), "3m20s");
        assert_eq!(d(599), "9m59s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(45 * 60), "45m");
        assert_eq!(d(3 * 3600 - 1), "179m");
        assert_eq!(d(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(d(4 * 3600), "4h");
        assert_eq!(d(36 * 3600), "36h");
        assert_eq!(d(76 * 3600), "3d4h");
        assert_eq!(d(72 * 3600), "3d");
        assert_eq!(d(120 * 86400), "120d");
        assert_eq!(d((2 * 365 + 30) * 86400), "2y30d");
        assert_eq!(d(9 * 365 * 86400), "9y");
    }

    #[test]
    fn every_row_has_one_cell_per_column() {
        let objs = [
            ("", "pods"),
            ("", "podtemplates"),
            ("", "replicationcontrollers"),
            ("apps", "replicasets"),
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("apps", "controllerrevisions"),
            ("batch", "jobs"),
            ("batch", "cronjobs"),
            ("", "services"),
            ("", "endpoints"),
            ("discovery.k8s.io", "endpointslices"),
            ("", "nodes"),
            ("", "events"),
            ("events.k8s.io", "events"),
            ("", "namespaces"),
            ("", "secrets"),
            ("", "configmaps"),
            ("", "serviceaccounts"),
            ("", "persistentvolumes"),
            ("", "persistentvolumeclaims"),
            ("", "limitranges"),
            ("", "resourcequotas"),
            ("networking.k8s.io", "ingresses"),
            ("networking.k8s.io", "ingressclasses"),
            ("networking.k8s.io", "networkpolicies"),
            ("coordination.k8s.io", "leases"),
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "clusterrolebindings"),
            ("policy", "poddisruptionbudgets"),
            ("storage.k8s.io", "storageclasses"),
            ("autoscaling", "horizontalpodautoscalers"),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("example.com", "widgets"),
        ];
        let empty = json!({"metadata": {"name": "x"}});
        for (g, p) in objs {
            assert_eq!(
                columns(g, p).len(),
                cells(g, p, &empty, now()).len(),
                "{g}/{p}"
            );
            let names: Vec<_> = columns(g, p).iter().map(|c| c.name).collect();
            assert!(names.contains(&"Name"), "{g}/{p}");
        }
        for r in crate::resources::builtin() {
            assert_eq!(
                columns(&r.group, &r.plural).len(),
                cells(&r.group, &r.plural, &empty, now()).len(),
                "{}/{}",
                r.group,
                r.plural
            );
        }
    }

    #[test]
    fn pod_rows() {
        let running = json!({"metadata": {"name": "web", "creationTimestamp": ago(300)},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.42.0.9", "podIPs": [{"ip": "10.42.0.9"}],
              "conditions": [{"type": "Ready", "status": "True"}],
              "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(65)}}}]}});
        assert_eq!(
            cells("", "pods", &running, now()),
            vec![
                json!("web"),
                json!("2/2"),
                json!("Running"),
                json!("2 (65s ago)"),
                json!("5m"),
                json!("10.42.0.9"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Pending"}});
        let c = cells("", "pods", &pending, now());
        assert_eq!(
            (c[1].clone(), c[2].clone(), c[3].clone(), c[4].clone()),
            (
                json!("0/1"),
                json!("Pending"),
                json!("0"),
                json!("<unknown>")
            )
        );
        assert_eq!(c[5], "<none>");
        let creating = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "a", "ready": false,
              "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(cells("", "pods", &creating, now())[2], "ContainerCreating");
        let crash = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": false,
              "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(cells("", "pods", &crash, now())[2], "CrashLoopBackOff");
        let done = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "a", "ready": false,
              "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(cells("", "pods", &done, now())[2], "Completed");
        let mut deleting = running.clone();
        deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(cells("", "pods", &deleting, now())[2], "Terminating");
        let init = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "restartCount": 0,
              "state": {"running": {}}}]}});
        assert_eq!(cells("", "pods", &init, now())[2], "Init:0/1");
    }

    #[test]
    fn workload_rows() {
        let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(30)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
              "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            cells("apps", "deployments", &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("30s"),
                json!("nginx"),
                json!("nginx:1.27"),
                json!("app=web")
            ]
        );
        let j = json!({"metadata": {"name": "pi"}, "spec": {"completions": 1},
            "status": {"succeeded": 1, "startTime": ago(100), "completionTime": ago(40),
              "conditions": [{"type": "Complete", "status": "True"}]}});
        let c = cells("batch", "jobs", &j, now());
        assert_eq!(
            (c[1].clone(), c[2].clone(), c[3].clone()),
            (json!("Complete"), json!("1/1"), json!("60s"))
        );
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "suspend": false}});
        let c = cells("batch", "cronjobs", &cj, now());
        assert_eq!(
            &c[1..6],
            &[
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>")
            ]
        );
        let ds = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"nodeSelector": {"b": "2", "a": "1"}}}}});
        assert_eq!(cells("apps", "daemonsets", &ds, now())[6], "a=1,b=2");
    }

    #[test]
    fn service_node_event_rows() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort",
            "clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web"}}});
        let c = cells("", "services", &svc, now());
        assert_eq!(
            &c[1..5],
            &[
                json!("NodePort"),
                json!("10.43.0.5"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        assert_eq!(c[6], "app=web");
        let lb = json!({"metadata": {"name": "l"}, "spec": {"type": "LoadBalancer", "clusterIP": "None"}});
        assert_eq!(cells("", "services", &lb, now())[3], "<pending>");
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"},
              "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]}});
        let c = cells("", "nodes", &node, now());
        assert_eq!(
            &c[1..3],
            &[
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,master")
            ]
        );
        assert_eq!(c[4], "v1.33.0");
        assert_eq!(c[5], "192.0.2.1");
        assert_eq!(c[6], "<none>");
        assert_eq!(c[7], "<unknown>");
        let ev = json!({"metadata": {"name": "web.17"}, "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "name": "web"}, "source": {"component": "default-scheduler"},
            "message": "Successfully assigned default/web to n1 ", "firstTimestamp": ago(10), "lastTimestamp": ago(5)});
        assert_eq!(
            cells("", "events", &ev, now()),
            vec![
                json!("5s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/web"),
                json!(""),
                json!("default-scheduler"),
                json!("Successfully assigned default/web to n1"),
                json!("10s"),
                json!(1),
                json!("web.17")
            ]
        );
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
        assert_eq!(cells("", "configmaps", &cm, now())[1], 3);
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            cells("", "endpoints", &ep, now())[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
        );
    }

    #[test]
    fn definitions_json_shape() {
        let v = column_definitions_json(&columns("", "pods"));
        assert_eq!(v[0]["name"], "Name");
        assert_eq!(v[0]["format"], "name");
        assert_eq!(v[5]["priority"], 1);
        let row = row_json(
            "",
            "pods",
            &json!({"metadata": {"name": "p", "namespace": "d"}}),
            now(),
            "Metadata",
        );
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["namespace"], "d");
    }
}
