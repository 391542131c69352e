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
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    seen: Arc<Mutex<HashMap<SeenKey, SeenEvent>>>,
}

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
        Recorder {
            client,
            component: component.to_string(),
            seen: Default::default(),
        }
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
        let this = self.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(e) = this.write(involved, kind, &reason, message).await {
                tracing::debug!(error = %e, "writing event failed");
            }
        });
    }

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
