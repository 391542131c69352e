//! Status writes as JSON merge patches: a field the new status leaves out must be sent as
//! `null`, or the merge would keep the old value (k8s-openapi omits `None` fields).

use serde::Serialize;
use serde_json::Value;

/// `{"status": new}` with every top-level field of `old` that `new` lacks set to null.
pub fn status_patch<T: Serialize>(old: Option<&T>, new: &T) -> Value {
    let mut n = serde_json::to_value(new).unwrap_or(Value::Null);
    if let (Some(Value::Object(o)), Value::Object(nm)) = (
        old.map(|o| serde_json::to_value(o).unwrap_or(Value::Null)),
        &mut n,
    ) {
        for k in o.keys() {
            nm.entry(k.clone()).or_insert(Value::Null);
        }
    }
    serde_json::json!({ "status": n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::CronJobStatus;

    #[test]
    fn fields_left_out_are_cleared() {
        let old = CronJobStatus {
            active: Some(vec![Default::default()]),
            ..Default::default()
        };
        let p = status_patch(Some(&old), &CronJobStatus::default());
        assert_eq!(p, serde_json::json!({"status": {"active": null}}));
    }
}
