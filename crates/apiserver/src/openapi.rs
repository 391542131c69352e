//! `/openapi/v3` and `/openapi/v3/<group-version>` (generated in `skiff_api::openapi`), and
//! `/openapi/v2` in the gnostic protobuf form kubectl 1.27 and 1.28 ask for.

use std::sync::Arc;

use http::{header, HeaderValue};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::StatusError;

use crate::http::{self as h, Response};

/// The media type of the v2 protobuf answer. kubectl 1.27/1.28 ask for
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, but Go's `mime` cannot parse
/// the `@`, so upstream answers with this spelling.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Serve an `/openapi/...` path; `None` when the path is not one.
pub fn serve(
    resources: &[Arc<ResourceInfo>],
    path: &str,
    query_hash: Option<&str>,
    headers: &http::HeaderMap,
) -> Option<Response> {
    let resources: Vec<ResourceInfo> = resources.iter().map(|r| (**r).clone()).collect();
    let path = path.trim_end_matches('/');
    if path == "/openapi/v3" {
        let root = skiff_api::openapi::v3_root(&resources);
        let mut r = h::json(200, &root);
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        return Some(r);
    }
    if path == "/openapi/v2" {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut r = if accept.contains("protobuf") {
            h::bytes_response(
                200,
                V2_PROTOBUF,
                skiff_api::openapi::v2_protobuf(&resources),
            )
        } else {
            h::json(200, &skiff_api::openapi::v2_json(&resources))
        };
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        return Some(r);
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        let Some(doc) = skiff_api::openapi::v3_document(&resources, gv) else {
            return Some(h::error(&StatusError::path_not_found()));
        };
        let etag = format!("\"{}\"", doc.hash);
        let cache = if query_hash == Some(doc.hash.as_str()) {
            "public, immutable"
        } else {
            "no-cache, private"
        };
        let not_modified = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == etag);
        let mut r = if not_modified {
            h::bytes_response(304, "application/json", Vec::new())
        } else {
            h::bytes_response(200, "application/json", doc.bytes.clone())
        };
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        return Some(r);
    }
    None
}
