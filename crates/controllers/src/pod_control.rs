//! Creating and deleting a controller's pods, as upstream's `PodControl`: each write is
//! announced to the expectations first, reported as an Event, and taken back from the
//! expectations when it fails, so the next sync does not wait for a change that never comes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use skiff_client::{EventType, Queue, Recorder};

use crate::expectations::Expectations;
use crate::is_gone_or_conflict;

/// How many pod writes one sync has in flight.
const CONCURRENCY: usize = 16;

/// A controller's view of its pods' writes.
pub(crate) struct PodControl<'a> {
    pub expectations: &'a Expectations,
    pub recorder: &'a Recorder,
    pub queue: &'a Queue,
}

impl PodControl<'_> {
    /// Create `pods` for `owner` (queued under `key`); a failure requeues the owner.
    pub async fn create<K: Resource<DynamicType = ()>>(
        &self,
        api: &Api<Pod>,
        owner: &K,
        key: &str,
        pods: Vec<Pod>,
    ) {
        use futures::StreamExt;
        self.expectations
            .expect_adds(key, pods.iter().map(|p| p.name_any()));
        futures::stream::iter(pods)
            .for_each_concurrent(CONCURRENCY, |pod| async move {
                let name = pod.name_any();
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => self.recorder.publish(
                        owner,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    ),
                    Err(e) => {
                        self.expectations.lower_add(key, &name);
                        let msg = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        self.recorder.publish(
                            owner,
                            EventType::Warning,
                            "FailedCreate",
                            format!("Error creating: {msg}"),
                        );
                        self.queue
                            .add_after(key.to_string(), Duration::from_secs(1));
                    }
                }
            })
            .await;
    }

    /// Delete `pods` of `owner` (queued under `key`); one already gone counts as deleted.
    pub async fn delete<K: Resource<DynamicType = ()>>(
        &self,
        api: &Api<Pod>,
        owner: &K,
        key: &str,
        pods: Vec<Arc<Pod>>,
    ) {
        use futures::StreamExt;
        self.expectations
            .expect_dels(key, pods.iter().map(|p| p.name_any()));
        futures::stream::iter(pods)
            .for_each_concurrent(CONCURRENCY, |p| async move {
                let name = p.name_any();
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => self.recorder.publish(
                        owner,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    ),
                    Err(e) => {
                        self.expectations.lower_del(key, &name);
                        if !is_gone_or_conflict(&e) {
                            self.recorder.publish(
                                owner,
                                EventType::Warning,
                                "FailedDelete",
                                format!("Error deleting: {e}"),
                            );
                        }
                    }
                }
            })
            .await;
    }
}
