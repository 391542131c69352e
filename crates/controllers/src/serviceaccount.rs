//! TODO

use std::sync::Arc;

pub fn start(_informers: &Arc<skiff_client::Informers>) {}
