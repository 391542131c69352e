//! HTTP plumbing: response bodies, JSON and `Status` responses, bounded request bodies and
//! streamed (chunked) responses.

use std::convert::Infallible;

use bytes::Bytes;
use futures::Stream;
use http::{header, HeaderValue, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;
use skiff_api::status::StatusError;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
pub type Response = http::Response<Body>;

/// Upstream's limit on a request body (`--max-request-bytes`, 3 MiB); a bit more for
/// last-applied annotations that double an object.
pub const MAX_BODY: usize = 3 * 1024 * 1024 + 512 * 1024;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

pub fn bytes_response(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response {
    let mut r = http::Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    r
}

pub fn json(code: u16, v: &Value) -> Response {
    bytes_response(
        code,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// A `Status` error response. One that suggests when to try again also says so in a
/// `Retry-After` header, as upstream does: client-go waits and retries by it.
pub fn error(e: &StatusError) -> Response {
    let mut r = json(e.code, &e.to_status());
    if let Some(secs) = e
        .details
        .as_ref()
        .and_then(|d| d.get("retryAfterSeconds"))
        .and_then(Value::as_u64)
        .filter(|s| *s > 0)
    {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

pub fn text(code: u16, s: impl Into<String>) -> Response {
    bytes_response(code, "text/plain; charset=utf-8", s.into())
}

/// A streamed response: each item is sent as one chunk, as soon as it is produced.
pub fn streaming<S>(content_type: &str, s: S) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    use futures::StreamExt;
    let body = StreamBody::new(s.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = http::Response::new(BodyExt::boxed_unsync(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

/// Read a request body, refusing (413) one over `limit` before reading it whole.
pub async fn read_body(
    headers: &http::HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, StatusError> {
    let too_large = || {
        StatusError::request_entity_too_large(format!(
            "the request body is larger than the limit of {limit} bytes"
        ))
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(too_large());
        }
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_large())
            } else {
                Err(StatusError::bad_request(format!(
                    "error reading the request body: {e}"
                )))
            }
        }
    }
}

/// The media type of a Content-Type header, without parameters, lower-cased.
pub fn media_type(headers: &http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decode a request body: JSON, YAML (`application/yaml`, and apply patches which are
/// YAML), or Kubernetes protobuf (kubectl 1.32+ typed commands). Malformed input is a 400
/// naming the problem.
pub fn decode_body(media: &str, body: &[u8]) -> Result<Value, StatusError> {
    if media == "application/vnd.kubernetes.protobuf" {
        return skiff_api::protobuf::decode(body).map_err(|e| {
            StatusError::bad_request(format!(
                "the body of the request could not be decoded as protobuf: {e}"
            ))
        });
    }
    if media.contains("protobuf") || media.contains("cbor") {
        return Err(StatusError::unsupported_media_type(media));
    }
    let is_yaml = media.contains("yaml");
    if is_yaml {
        let v: Value = serde_yaml::from_slice(body).map_err(|e| {
            StatusError::bad_request(format!("error converting YAML to JSON: yaml: {e}"))
        })?;
        return Ok(v);
    }
    serde_json::from_slice(body).map_err(|e| {
        StatusError::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })
}
