//! The pure part of skiff's Kubernetes API: which resources exist ([`resources`]), `Status`
//! errors ([`status`]), label and field selectors ([`selector`], [`fields`]), defaulting
//! ([`defaults`]), validation ([`validation`]) and server-side tables ([`table`]).
//!
//! Objects are handled as `serde_json::Value` so the same code serves built-in kinds,
//! patches and custom resources alike. Nothing here does I/O.

pub mod convert;
pub mod crd;
pub mod defaults;
pub mod field_validation;
pub mod fields;
pub mod managed;
pub mod openapi;
pub mod protobuf;
pub mod quantity;
pub mod resources;
pub mod selector;
pub mod status;
pub mod strategic;
pub mod table;
pub mod validation;
