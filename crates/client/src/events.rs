//! Core/v1 Events as upstream's event recorder writes them (what `kubectl describe` and
//! `kubectl get events` show). A repeated event on the same object bumps `count` and
//! `lastTimestamp` instead of creating a new object, as upstream's correlator does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Writes Events for one component (`deployment-controller`, `default-scheduler`, ...).
/// Events queue up to `BACKLOG` and are written by `WRITERS` tasks; beyond that they are
/// dropped, as upstream's broadcaster does, so a burst never turns into thousands of
/// concurrent requests.
#[derive(Clone)]
pub struct Recorder {
    tx: tokio::sync::mpsc::Sender<(ObjectReference, EventType, String, String)>,
}

struct Inner {
    client: Client,
    component: String,
    seen: Mutex<HashMap<SeenKey, SeenEvent>>,
}

const BACKLOG: usize = 1000;
const WRITERS: usize = 2;

/// (object uid, reason, message).
type SeenKey = (String, String, String);
/// (event namespace, event name, count).
type SeenEvent = (String, String, i32);

const SEEN_LIMIT: usize = 4096;

/// An ObjectReference for an object, as `involvedObject`.
pub fn object_ref<K: Resource<DynamicType = ()>>(o: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: o.meta().name.clone(),
        namespace: o.meta().namespace.clone(),
        uid: o.meta().uid.clone(),
        resource_version: o.meta().resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Self {
        let inner = Arc::new(Inner {
            client,
            component: component.to_string(),
            seen: Default::default(),
        });
        let (tx, rx) =
            tokio::sync::mpsc::channel::<(ObjectReference, EventType, String, String)>(BACKLOG);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WRITERS {
            let (inner, rx) = (inner.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some((involved, kind, reason, message)) = next else {
                        return;
                    };
                    if let Err(e) = inner.write(involved, kind, &reason, message).await {
                        tracing::debug!(error = %e, "writing event failed");
                    }
                }
            });
        }
        Recorder { tx }
    }

    /// Records an event about `obj` in the background (never blocks or fails the caller).
    pub fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        kind: EventType,
        reason: &str,
        message: String,
    ) {
        self.publish_ref(object_ref(obj), kind, reason, message);
    }

    pub fn publish_ref(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: String,
    ) {
        if self
            .tx
            .try_send((involved, kind, reason.to_string(), message))
            .is_err()
        {
            tracing::debug!(reason, "event backlog full; dropping event");
        }
    }
}

impl Inner {
    async fn write(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: String,
    ) -> Result<(), kube::Error> {
        let now = crate::now();
        // Events of cluster-scoped objects live in `default`, as upstream.
        let ns = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let key = (
            involved.uid.clone().unwrap_or_default(),
            reason.to_string(),
            message.clone(),
        );
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let previous = self.seen.lock().unwrap().get(&key).cloned();
        if let Some((ns, name, count)) = previous {
            let patch = serde_json::json!({"count": count + 1, "lastTimestamp": now});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.seen.lock().unwrap().insert(key, (ns, name, count + 1));
                return Ok(());
            }
        }
        let nanos = k8s_openapi::jiff::Timestamp::now().as_nanosecond();
        let name = format!(
            "{}.{:x}",
            involved.name.clone().unwrap_or_default(),
            nanos as u64
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(kind.as_str().to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            count: Some(1),
            event_time: None::<MicroTime>,
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        let created = api.create(&PostParams::default(), &ev).await?;
        let mut seen = self.seen.lock().unwrap();
        if seen.len() >= SEEN_LIMIT {
            seen.clear();
        }
        seen.insert(key, (ns, created.name_any(), 1));
        Ok(())
    }
}
